"""From a config to a ready run: the data, what it tells the model, the model, the state.

How a run flows (`train.py` and `eval.py` both stand on this module):

    config ──open_dataset──> data ──DataMeta.of──> meta (identities, cameras, frame size)
    build(config, meta) ──> ReIDModel: Flax module + its objective + its test feature
    abstract_state(...)   shapes and shardings only (`jax.eval_shape`), nothing computed
    restore_or_init(...)  workdir checkpoint → config.resume → ImageNet weights → scratch

The config is never mutated: what the data decides travels in `DataMeta`, and
`resolved_config` gives the config as run (written to `WORKDIR/config.json`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils

from input_pipeline.build import build_dataset
from input_pipeline.builders import SPLIT_DATASETS, config_name
from input_pipeline.builders.reid_synthetic.reid_synthetic_dataset_builder import (
    synthetic_config,
)
from input_pipeline.datasets import DATASETS
from input_pipeline.records import ReIDDataset, dataset_dir
from reidjax import checkpoint, sharding, weights, workdir_io
from reidjax.errors import ConfigError
from reidjax.models import ReIDModel, build_model
from reidjax.models.factory import dummy_clips
from reidjax.optim import parameter_name


@dataclasses.dataclass(frozen=True)
class DataMeta:
    """What the data tells the model builder (scenic's `dataset.meta_data`).

    Attributes:
        name: the dataset's name.
        num_train_ids: identities of the training split (classifier width).
        num_cameras: cameras (DSANet's camera classifier width).
        frame_size: (height, width) of the stored frames.
    """

    name: str
    num_train_ids: int
    num_cameras: int
    frame_size: tuple[int, int]

    @classmethod
    def of(cls, data: ReIDDataset) -> DataMeta:
        """The metadata of a prepared dataset (its training split)."""
        train = data.splits["train"]
        return cls(
            name=data.manifest["name"],
            num_train_ids=len(np.unique(train.pid)),
            num_cameras=int(max(train.camid.max(initial=0), 0) + 1),
            frame_size=tuple(data.size),
        )


def registry_meta(config: ml_collections.ConfigDict) -> DataMeta:
    """The published sizes of the config's benchmark, without reading any data (model
    summaries, shape checks).

    Raises:
        ConfigError: an unknown dataset name, listing the valid ones.
    """
    name = config.dataset.name
    if name not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}; valid: {sorted(DATASETS)}")
    info = DATASETS[name]
    size = (config.input.height, config.input.width)
    return DataMeta(name, info.num_train_ids, info.num_cameras, size)


def build(config: ml_collections.ConfigDict, meta: DataMeta) -> ReIDModel:
    """The model family of the config, sized by the data: module, objective, test feature.

    `config.model.num_classes` and `config.dataset.num_cameras` win when > 0.
    """
    return build_model(config, meta.num_train_ids, config.dataset.num_cameras or meta.num_cameras)


def build_module(config: ml_collections.ConfigDict) -> nn.Module:
    """The Flax module of a benchmark config, sized from the dataset registry."""
    return build(config, registry_meta(config)).module


def resolved_config(config: ml_collections.ConfigDict, meta: DataMeta) -> ml_collections.ConfigDict:
    """A copy of the config with the sizes the data decided filled in (`model.num_classes`,
    `dataset.num_cameras`): the config as run."""
    resolved = config.copy_and_resolve_references()
    with resolved.unlocked():
        resolved.model.num_classes = config.model.num_classes or meta.num_train_ids
        resolved.dataset.num_cameras = config.dataset.num_cameras or meta.num_cameras
    return resolved


def write_config(workdir: str, config: ml_collections.ConfigDict, meta: DataMeta) -> None:
    """`WORKDIR/config.json`: the config as run (process 0; written atomically)."""
    if jax.process_index() != 0:
        return
    path = os.path.join(workdir, "config.json")
    workdir_io.write_text(path, resolved_config(config, meta).to_json(indent=2))


# ----------------------------------------------------------------------------- data


def builder_config(config: ml_collections.ConfigDict) -> str:
    """The tensorflow-datasets builder config the config reads: the frame size, plus the
    split (iLIDS-VID, PRID2011), the folder dataset's name, or the synthetic options.

    Raises:
        ConfigError: a folder dataset without `config.dataset.folder_name`.
    """
    d, size = config.dataset, (config.input.height, config.input.width)
    if d.name == "synthetic":
        return synthetic_config(d.synthetic_ids, d.synthetic_cameras, config.seed, size)
    if d.name in SPLIT_DATASETS:
        return config_name(size, d.split)
    if d.name == "folder":
        if not d.folder_name:
            raise ConfigError(
                "config.dataset.folder_name is empty: set it to the --name the dataset was "
                "built with (python -m input_pipeline.build --dataset folder --name NAME ...)"
            )
        return config_name(size, prefix=d.folder_name)
    return config_name(size)


def _build_synthetic_once(config: ml_collections.ConfigDict, name: str) -> None:
    data_dir = os.path.expanduser(config.dataset.data_dir)
    if os.path.isfile(os.path.join(dataset_dir("synthetic", name, data_dir), "dataset_info.json")):
        return
    print(f"building the synthetic dataset {name} in {data_dir} (once)...", flush=True)
    start = time.perf_counter()
    data = build_dataset("synthetic", name, data_dir, quiet=True)
    print(f"built {data.num_frames:,} frames in {time.perf_counter() - start:.1f} s", flush=True)


def open_dataset(config: ml_collections.ConfigDict) -> ReIDDataset:
    """The prepared dataset of the config; the synthetic one is built on first use (by
    process 0 first, so that hosts sharing a file system write it once).

    Raises:
        DatasetError: the dataset is not prepared in `config.dataset.data_dir` (the message
            gives the command that prepares it).
    """
    name = builder_config(config)
    if config.dataset.name == "synthetic":
        if jax.process_index() == 0:
            _build_synthetic_once(config, name)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("reidjax synthetic dataset")
            _build_synthetic_once(config, name)  # hosts without a shared disk
    return ReIDDataset(config.dataset.name, name, config.dataset.data_dir)


def open_data(config: ml_collections.ConfigDict) -> tuple[ReIDDataset, DataMeta]:
    """`open_dataset` and its metadata, checked against the config's frame size.

    Raises:
        ConfigError: the stored frames are not `config.input.height x width`.
    """
    data = open_dataset(config)
    meta = DataMeta.of(data)
    want = (config.input.height, config.input.width)
    if meta.frame_size != want:  # only a config name pointing at other frames can do this
        raise ConfigError(
            f"the frames of {data.directory} are {meta.frame_size[0]}x{meta.frame_size[1]} "
            f"but the config expects {want[0]}x{want[1]}"
        )
    return data, meta


# ----------------------------------------------------------------------------- state


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint holds: the step, parameters, BN statistics, optimizer."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def init_variables(model: ReIDModel, config: ml_collections.ConfigDict) -> dict:
    """The model's initial variables (`config.seed`), on the default device."""
    # The variables are created replicated, so the partitionable threefry buys nothing
    # here; the classic one compiles the init 2-3x faster.
    with jax.threefry_partitionable(False):
        return jax.jit(model.init)(jax.random.key(config.seed), dummy_clips(config))


def _state_of(variables: dict, tx: optax.GradientTransformation) -> TrainState:
    params = variables["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, variables["batch_stats"], tx.init(params))


def _with_sharding(tree, sharding_: jax.sharding.Sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_), tree)


def abstract_variables(model: ReIDModel, config: ml_collections.ConfigDict, mesh) -> dict:
    """Shapes, dtypes and (replicated) shardings of the model's variables; nothing is
    computed."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(config))
    return _with_sharding(shapes, sharding.replicated(mesh))


def abstract_state(
    model: ReIDModel, config: ml_collections.ConfigDict, tx: optax.GradientTransformation, mesh
) -> TrainState:
    """Shapes, dtypes and shardings of the train state (data parallel: replicated)."""
    shapes = jax.eval_shape(
        lambda: _state_of(model.init(jax.random.key(0), dummy_clips(config)), tx)
    )
    return _with_sharding(shapes, sharding.replicated(mesh))


def create_state(variables: dict, tx: optax.GradientTransformation, mesh) -> TrainState:
    """The step-0 train state of `variables`, placed replicated on `mesh`."""
    make = jax.jit(lambda v: _state_of(v, tx), out_shardings=sharding.replicated(mesh))
    return make(variables)


def resume_path(path: str) -> tuple[str, int | None]:
    """`config.resume`: a checkpoints folder (its latest step) or one step folder in it."""
    if workdir_io.is_local(path):
        path = os.path.abspath(os.path.expanduser(path))
    path = path.rstrip("/")
    if os.path.basename(path).isdigit() and workdir_io.exists(path):
        return os.path.dirname(path), int(os.path.basename(path))
    return path, None


def restore_or_init(
    model: ReIDModel,
    config: ml_collections.ConfigDict,
    tx: optax.GradientTransformation,
    mesh,
    ckpt: checkpoint.Checkpointer,
) -> tuple[TrainState, str]:
    """The state a run starts from, in this order: the latest checkpoint of the workdir
    (`ckpt`), `config.resume`, another run's variables (`config.init.checkpoint`), the
    ImageNet weights of `config.init.imagenet`, scratch.
    The ImageNet file is read only when it is used.

    Returns:
        (state, origin): origin is one line saying where the state came from.

    Raises:
        CheckpointNotFoundError / CheckpointMismatchError: a bad `config.resume`.
        WeightFileError: a missing or unfit ImageNet weight file.
    """
    if ckpt.steps():
        return restore_newest_readable(ckpt, abstract_state(model, config, tx, mesh))
    if config.resume:
        path, step = resume_path(config.resume)
        abstract = abstract_state(model, config, tx, mesh)
        state = checkpoint.restore_checked(path, abstract, step, what=f"config.resume={path}")
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
    for step in reversed(ckpt.steps()):
        try:
            ckpt.check_matches(abstract.params, step)
            state = ckpt.restore(abstract, step)
        except checkpoint.CheckpointMismatchError:
            raise
        except Exception as e:  # orbax/tensorstore raise many types for damaged files
            damaged.append((step, checkpoint.cause_of(e)))
            continue
        notes = []
        for bad, cause in damaged:
            where = ckpt.move_aside(bad, cause) if jax.process_index() == 0 else "(process 0)"
            notes.append(f"checkpoint step {bad} is unreadable ({cause}); moved to {where}")
            logging.warning("%s", notes[-1])
        if jax.process_count() > 1 and damaged:
            multihost_utils.sync_global_devices("reidjax damaged checkpoints moved")
            ckpt.manager.reload()
        origin = f"resumed from {ckpt.directory}/{step}"
        return state, "; ".join([*notes, origin])
    causes = "; ".join(f"step {s}: {c}" for s, c in damaged)
    raise checkpoint.DamagedCheckpointError(
        f"no checkpoint in {ckpt.directory} can be read ({causes}); nothing was moved. Move "
        "the folder away to start from scratch, or point config.resume at another run"
    )


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
    variables, report = weights.load_imagenet(config.init.imagenet, variables)
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
    if workdir_io.exists(os.path.join(path, "checkpoints")):
        path = os.path.join(path, "checkpoints")
    path, step = resume_path(path)
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


def describe(model: ReIDModel, config: ml_collections.ConfigDict, meta: DataMeta) -> str:
    """One line: the model, its size and the data it is sized for."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(config))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    m = config.model
    return (
        f"{m.name} ({m.arch}, {m.variant}): {count:,} parameters; {meta.name}: "
        f"{meta.num_train_ids} training identities, {meta.num_cameras} cameras, "
        f"{meta.frame_size[0]}x{meta.frame_size[1]} frames"
    )
