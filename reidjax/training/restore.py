"""Where a run's state comes from, in order: the workdir's own checkpoints (damaged steps
set aside) → `config.resume` → another run's variables (`config.init.checkpoint`) →
ImageNet weights (`config.init.imagenet`) → scratch. And the variables-only restore that
evaluation and inference use (the optimizer state is neither built nor read).
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from reidjax.models import ReIDModel
from reidjax.pretrained import inflation, weights
from reidjax.runtime import workdir_io
from reidjax.runtime.workdir import checkpoints_of
from reidjax.training import checkpoint, hosts
from reidjax.training.optim import parameter_name
from reidjax.training.state import TrainState, abstract_variables, create_state, init_variables


def resume_path(path: str) -> tuple[str, int | None]:
    """`config.resume`: a checkpoints folder (its latest step) or one step folder in it."""
    if workdir_io.is_local(path):
        path = os.path.abspath(os.path.expanduser(path))
    path = path.rstrip("/")
    if os.path.basename(path).isdigit() and workdir_io.exists(path):
        return os.path.dirname(path), int(os.path.basename(path))
    return path, None


def restore_or_init(run, ckpt: checkpoint.Checkpointer) -> tuple[TrainState, str]:
    """The state a training run (`experiment.Run`) starts from, in this order: the latest
    checkpoint of the workdir (`ckpt`), `config.resume`, another run's variables
    (`config.init.checkpoint`), the ImageNet weights of `config.init.imagenet`, scratch.
    The ImageNet file is read only when it is used.

    Returns:
        (state, origin): origin is one line saying where the state came from.

    Raises:
        CheckpointNotFoundError / CheckpointMismatchError: a bad `config.resume`.
        WeightFileError: a missing or unfit ImageNet weight file.
    """
    model, config, tx, mesh = run.model, run.config, run.tx, run.mesh
    if ckpt.steps():
        return restore_newest_readable(ckpt, run.abstract_state)
    if config.resume:
        path, step = resume_path(config.resume)
        what = f"config.resume={path}"
        state = checkpoint.restore_checked(path, run.abstract_state, step, what=what)
        return state, f"started from config.resume={path} (step {int(state.step)})"
    variables, origin = initial_variables(model, config)
    return create_state(variables, tx, mesh), origin


def restore_newest_readable(
    ckpt: checkpoint.Checkpointer, abstract: TrainState
) -> tuple[TrainState, str]:
    """The newest checkpoint of `ckpt` that reads back whole, after checking that it
    belongs to this model. Newer unreadable steps (a truncated file, a missing part) are
    moved to `checkpoints_damaged/` (never deleted), each reported in one line.

    Raises:
        CheckpointMismatchError: the checkpoints were written by another model.
        DamagedCheckpointError: no checkpoint is readable (nothing is moved then, and the
            run does not start from scratch).
    """
    damaged = []
    steps = ckpt.steps()
    for step in reversed(steps):
        try:
            ckpt.check_matches(abstract.params, step)
            state = ckpt.restore(abstract, step)
        except checkpoint.CheckpointMismatchError:
            # Another model's checkpoints, or this step's list of arrays damaged: an older
            # step of the same workdir that matches tells which.
            if not any(_matches(ckpt, abstract, s) for s in steps if s < step):
                raise
            words = "its list of arrays, default/_METADATA, differs from the run's other steps"
            damaged.append((step, words, words))
            continue
        except Exception as e:  # orbax/tensorstore raise many types
            is_damage, words = checkpoint.diagnose(e)
            if not is_damage:
                raise checkpoint.CheckpointReadError(
                    f"cannot read checkpoint step {step} in {ckpt.directory}: {words} "
                    f"({checkpoint.cause_of(e)}); nothing was moved"
                ) from None
            damaged.append((step, words, checkpoint.cause_of(e)))
            continue
        notes = []
        for bad, words, cause in damaged:
            where = ckpt.move_aside(bad, cause) if jax.process_index() == 0 else "(process 0)"
            notes.append(f"checkpoint step {bad} is unreadable ({words}); moved to {where}")
        if jax.process_count() > 1 and damaged:
            hosts.barrier("damaged-checkpoints-moved")
            ckpt.manager.reload()
        origin = f"resumed from {ckpt.directory}/{step}"
        return state, "; ".join([*notes, origin])
    causes = "; ".join(f"step {s}: {words}" for s, words, _ in damaged)
    raise checkpoint.DamagedCheckpointError(
        f"no checkpoint in {ckpt.directory} can be read ({causes}); nothing was moved. Move "
        "the folder away to start from scratch, or point config.resume at another run"
    )


def _matches(ckpt: checkpoint.Checkpointer, abstract: TrainState, step: int) -> bool:
    try:
        ckpt.check_matches(abstract.params, step)
    except Exception:
        return False
    return True


def initial_variables(model: ReIDModel, config: ml_collections.ConfigDict) -> tuple[dict, str]:
    """The variables before any training: the ImageNet weights of `config.init.imagenet`
    inflated into the trunk over the random init, or the random init alone.

    Returns:
        (variables, origin): origin says what the ImageNet initialisation did.

    Raises:
        WeightFileError: a missing or unfit weight file.
    """
    if config.init.checkpoint:
        return checkpoint_variables(model, config)
    variables = init_variables(model, config)
    if config.init.imagenet.lower() in weights.NONE:
        return variables, "from scratch (config.init.imagenet=none)"
    variables, report = inflation.load_imagenet(config.init.imagenet, variables)
    return variables, f"{report.summary()} from {os.path.expanduser(config.init.imagenet)}"


def checkpoint_variables(model: ReIDModel, config: ml_collections.ConfigDict) -> tuple[dict, str]:
    """Fine-tuning start: the variables of another run's checkpoint (`config.init.checkpoint`:
    a workdir, its checkpoints folder or one step folder) copied over this model's initial
    variables wherever name and shape agree; the rest (the classifier of another identity
    count, heads the other model lacks) keeps its initialisation. Step and optimizer start
    afresh.

    Raises:
        CheckpointNotFoundError: nothing there.
        CheckpointMismatchError: no parameter in common (another architecture).
    """
    path = config.init.checkpoint
    if workdir_io.is_local(path):
        path = os.path.abspath(os.path.expanduser(path))
    path, step = resume_path(checkpoints_of(path))
    what = f"config.init.checkpoint={config.init.checkpoint}"
    source, step = checkpoint.read_variables(path, step, what)
    target = init_variables(model, config)
    copied, kept = [], []
    flat_source = {parameter_name(k): v for k, v in jax.tree_util.tree_leaves_with_path(source)}

    def take(key_path, init):
        name = parameter_name(key_path)
        value = flat_source.get(name)
        if value is not None and value.shape == init.shape:
            copied.append(name)
            return np.asarray(value, init.dtype)  # host: placed with the state
        kept.append(name)
        return init

    variables = jax.tree_util.tree_map_with_path(take, target)
    if not any(name.startswith("params/") for name in copied):
        raise checkpoint.CheckpointMismatchError(
            f"{what}: no parameter of {path}/{step} has a name and shape of this model "
            f"({config.model.name}, {config.model.arch}, {config.model.variant})"
        )
    unused = len(flat_source) - len(copied)
    preview = ", ".join(kept[:3])
    origin = (
        f"fine-tuning from {path}/{step}: {len(copied)} tensors copied, {len(kept)} kept at "
        f"init{f' ({preview})' if kept else ''}, {unused} of the checkpoint unused; step and "
        "optimizer start afresh"
    )
    return variables, origin


def restore_variables(
    model: ReIDModel,
    config: ml_collections.ConfigDict,
    directory: str,
    mesh,
    step: int | None = None,
) -> tuple[dict, int]:
    """The parameters and BN statistics of a train-state checkpoint, replicated on `mesh`;
    the optimizer state is neither built nor read.

    Raises:
        CheckpointNotFoundError: no checkpoint (with the train command to run).
        CheckpointMismatchError: the checkpoint belongs to another model.
    """
    hint = "nothing to evaluate; train first with python train.py --config CONFIG --workdir DIR"
    target = abstract_variables(model, config, mesh)
    return checkpoint.restore_variables(directory, target, step, what=hint)
