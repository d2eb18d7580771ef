"""Orbax checkpoints of the train state: atomic, asynchronous, keep-last-k.

The checkpoint holds the state only (step, params, BN statistics, optimizer state);
hyper-parameters always come from the config. Orbax writes each step to a temporary
folder and renames it when complete, so an interrupted save never leaves a readable
half checkpoint. Restoring takes the target shardings, so a checkpoint saved on 8 devices
restores on 1 (or on another mesh).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from reidjax.errors import UserError
from reidjax.runtime import param_structure, workdir, workdir_io
from reidjax.training import integrity

# The folder of the train state inside each step folder (orbax's single-item default).
ITEM = "default"

# Orbax writes an array replicated over N devices as N slices, one per replica; for a small
# array each is one more chunk and compiled `slice` program (200, 8.4 s, at the smoke state's
# first save on 8 CPU devices). Slices under this size are not made (one replica writes).
MIN_SLICE_BYTES = 256 * 1024


def _register_array_handler() -> None:
    """Orbax's `jax.Array` handler with that floor (its warning about the swap silenced)."""
    level = (absl_logger := logging.getLogger("absl")).level
    absl_logger.setLevel(logging.ERROR)  # commands keep stderr to one line for the user
    try:
        options = {"min_slice_bytes_for_replica_parallel": MIN_SLICE_BYTES}
        handler = ocp.type_handlers.ArrayHandler(**options)
        ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
    finally:
        absl_logger.setLevel(level)


_register_array_handler()


class CheckpointMismatchError(UserError, ValueError):
    """The checkpoint was written by another model (other parameter names or shapes)."""


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """No checkpoint folder, or no checkpoint at the asked step."""


class CheckpointSaveError(UserError, OSError):
    """A checkpoint could not be written (a full disk, lost permissions)."""


class DamagedCheckpointError(UserError, ValueError):
    """A checkpoint's files are unreadable (truncated, or parts missing)."""


class CheckpointReadError(UserError, OSError):
    """A checkpoint could not be read for a reason that is not damage (no permission, no
    memory, storage that does not answer): nothing is moved."""


# What a failed restore means, from the exception chain (types, then message text): the
# first rule that matches wins. Not damage first: the step is fine and must not be moved.
_READ_RULES = (
    (False, (PermissionError,), ("PERMISSION_DENIED", "Permission denied"),
     "no permission to read it: give this user read access and run the same command"),
    (False, (MemoryError,), ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory"),
     "out of memory while reading it: restore on a host with more memory"),
    (False, (ConnectionError, TimeoutError), ("UNAVAILABLE", "DEADLINE_EXCEEDED"),
     "the storage did not answer: run the same command again when it does"),
    (True, (), ("'NoneType' object has no attribute 'tree'",),
     "its list of arrays, default/_METADATA, is missing"),
    (True, (), ("handler_registry", 'Item "default" was not found'),
     "its data folder, default/, is missing"),
    (True, (json.JSONDecodeError,), (),
     "a metadata file is empty or cut short"),
    (True, (), ("OUT_OF_RANGE", "DATA_LOSS", "Error reading"),
     "a data file is cut short or corrupt"),
    (True, (FileNotFoundError,), ("NOT_FOUND",),
     "a file of it is missing"),
    (True, (), ("tree structures do not match", "pytree structure error"),
     "its list of arrays, default/_METADATA, does not match its data"),
)  # fmt: skip


def _chain(error: BaseException) -> list[BaseException]:
    chain = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def diagnose(error: BaseException) -> tuple[bool, str]:
    """(damaged, plain words) for an exception raised while reading a checkpoint step.
    Damaged: its files are missing, cut short or unparseable (the step may be moved
    aside). Otherwise (no permission, no memory, unreachable storage, anything not
    recognised) the step is left alone and the words say what to do."""
    chain = _chain(error)
    for e in chain:
        if isinstance(e, integrity.DigestMismatchError):
            return True, str(e)
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    for damaged, types, needles, words in _READ_RULES:
        if any(isinstance(e, types) for e in chain) or any(n in text for n in needles):
            return damaged, words
    return False, cause_of(error)


def cause_of(error: BaseException) -> str:
    """The innermost message of an exception chain, on one line."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _has_os_error(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OSError):
            return True
        error = error.__cause__ or error.__context__
    return False


class Checkpointer:
    """Saves every `save_every` steps (and when forced), keeps the last `keep`.

    A failed asynchronous save (a full disk) is raised as one `CheckpointSaveError` at the
    next step, naming the step, the folder and the free space; a step already saved is not
    saved again.
    """

    def __init__(self, directory: str, keep: int = 3, save_every: int = 1000, create: bool = True):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=save_every, create=create
        )
        self.directory = os.path.abspath(directory) if workdir_io.is_local(directory) else directory
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int, force: bool = False) -> bool:
        """Whether `save(step, ..., force)` would write a checkpoint."""
        if step in self.manager.all_steps():
            return False
        return force or self.manager.should_save(step)

    def save(self, step: int, state, force: bool = False) -> bool:
        """Starts an asynchronous save of `state` at `step` (when due or forced; never twice
        for one step).

        Raises:
            CheckpointSaveError: this save, or the previous asynchronous one, failed.
        """
        self.check_for_errors()
        if not self.due(step, force):
            return False
        self.wait()  # the previous save's failure is that step's, not this one's
        try:
            # The digests first: a step folder never exists without them.
            integrity.save(self.directory, step, state, set(self.manager.all_steps()))
            saved = self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        except Exception as e:
            raise self._save_error(step, e) from e
        self._pending = step
        return saved

    def check_for_errors(self) -> None:
        """Raises `CheckpointSaveError` when the last asynchronous save failed."""
        try:
            self.manager.check_for_errors()
        except Exception as e:
            raise self._save_error(getattr(self, "_pending", None), e) from e

    def _save_error(self, step: int | None, error: Exception) -> Exception:
        text = str(error)
        if not _has_os_error(error) and "No space left" not in text:
            return error
        cause = "No space left on device" if "No space left" in text else cause_of(error)
        try:
            free = f"{shutil.disk_usage(self.directory).free / 2**20:,.1f} MiB free there"
        except OSError:
            free = "free space unknown"
        done = [s for s in self.manager.all_steps() if s != step]
        last = f"step {max(done)}" if done else "none"
        if "No space left" in text:
            todo = "free some space (or move the workdir)"
        elif any(isinstance(e, PermissionError) for e in _chain(error)) or "ermission" in text:
            todo = "give this user write access to it (or move the workdir)"
        else:
            todo = "fix the cause (or move the workdir)"
        return CheckpointSaveError(
            f"saving checkpoint step {step} to {self.directory} failed ({cause}; {free}); the "
            f"last complete checkpoint is {last}: {todo} and run the same command to resume"
        )

    def restore(self, target, step: int | None = None):
        """Restores into the structure, shapes and shardings of `target` (a state or its
        `jax.ShapeDtypeStruct`s)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
            target,
        )
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        integrity.verify(self.directory, step, state)
        return state

    def check_matches(self, params, step: int | None = None) -> None:
        """Raises `CheckpointMismatchError` naming the differences when the parameters
        saved at `step` (default: latest) do not have the names and shapes of `params`."""
        step = self.latest_step() if step is None else step
        saved = self.manager.item_metadata(step).tree
        saved = saved.get("params") if isinstance(saved, dict) else None
        if saved is None:
            raise CheckpointMismatchError(
                f"{self.directory}/{step} holds no train state ('params' missing)"
            )
        problems = param_structure.shape_differences(saved, params)
        if problems:
            raise CheckpointMismatchError(
                f"the checkpoint {self.directory}/{step} was written by a different model "
                f"({len(problems)} parameter differences: {param_structure.summarize(problems)}). "
                "Use the config (and --config overrides) it was trained with; to test it on "
                "another dataset: python eval.py --workdir RUN --test_on DATASET."
            )

    def wait(self) -> None:
        """Waits for the asynchronous save in flight.

        Raises:
            CheckpointSaveError: it failed.
        """
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(getattr(self, "_pending", None), e) from e

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def move_aside(self, step: int, cause: str) -> str:
        """Moves an unreadable step folder to `<checkpoints>_damaged/<step>` (never deletes
        it) and forgets it; returns the new location."""
        target_dir = workdir.damaged(self.directory)
        epath.Path(target_dir).mkdir(parents=True, exist_ok=True)
        target = os.path.join(target_dir, str(step))
        suffix = 1
        while epath.Path(target).exists():
            target, suffix = os.path.join(target_dir, f"{step}.{suffix}"), suffix + 1
        epath.Path(os.path.join(self.directory, str(step))).rename(target)  # any workdir
        epath.Path(target + ".why.txt").write_text(cause + "\n")
        digests = epath.Path(integrity.path(self.directory, step))
        if digests.exists():
            digests.rename(target + ".digests.json")
        self.manager.reload()
        return target

    def close(self) -> None:
        """Finishes the save in flight and closes.

        Raises:
            CheckpointSaveError: that save failed (closing waits for it, so a failure not
                yet reported surfaces here, possibly while another error propagates).
        """
        try:
            self.manager.wait_until_finished()
            saved = hasattr(self, "_pending")  # a reader (eval.py) leaves the folder as is
            if saved and jax.process_index() == 0:  # digests of steps deleted since a save
                integrity.prune(self.directory, set(self.manager.all_steps()))
            self.manager.close()
        except Exception as e:
            raise self._save_error(getattr(self, "_pending", None), e) from e


def _checked_step(directory: str, step: int | None, what: str) -> tuple[Checkpointer, int]:
    """An open `Checkpointer` on `directory` and the step to read (default: latest)."""
    prefix = f"{what}: " if what else ""
    if not epath.Path(directory).is_dir():
        raise CheckpointNotFoundError(f"{prefix}no checkpoint folder {directory}")
    ckpt = Checkpointer(directory, create=False)
    steps = list(ckpt.manager.all_steps())
    step = ckpt.latest_step() if step is None else step
    if step is None or step not in steps:
        ckpt.close()
        at = "" if step is None else f" at step {step}"
        raise CheckpointNotFoundError(
            f"{prefix}no checkpoint{at} in {directory} (steps: {sorted(steps)})"
        )
    return ckpt, step


def restore_checked(directory: str, target, step: int | None = None, what: str = ""):
    """Restores `target` (a train state or its abstract shapes) from `directory` after
    checking that the checkpoint's parameters have the names and shapes of `target.params`.

    Raises:
        CheckpointNotFoundError: no such folder or step (`what` starts the message).
        CheckpointMismatchError: the checkpoint was written by another model.
    """
    ckpt, step = _checked_step(directory, step, what)
    try:
        ckpt.check_matches(target.params, step)
        return ckpt.restore(target, step)
    finally:
        ckpt.close()


def restore_variables(
    directory: str, target: dict, step: int | None = None, what: str = ""
) -> tuple[dict, int]:
    """The model variables of a train-state checkpoint: `params` and `batch_stats` only
    (an orbax partial restore: the optimizer state is not read and needs no optimizer).

    Args:
        target: `{"params": ..., "batch_stats": ...}` of `jax.ShapeDtypeStruct`s with
            their shardings.

    Returns:
        (variables, step).

    Raises:
        CheckpointNotFoundError, CheckpointMismatchError: as `restore_checked`.
    """
    ckpt, step = _checked_step(directory, step, what)
    try:
        ckpt.check_matches(target["params"], step)
        variables, saved_step = _partial_restore(ckpt, step, target, _sharding_of(target))
    finally:
        ckpt.close()
    return variables, saved_step


def read_variables(directory: str, step: int | None = None, what: str = "") -> tuple[dict, int]:
    """The `params` and `batch_stats` of a train-state checkpoint in the shapes they were
    saved with (whatever model wrote them), on the default device: the source of a
    fine-tuning start (`config.init.checkpoint`).

    Raises:
        CheckpointNotFoundError: no such folder or step.
    """
    ckpt, step = _checked_step(directory, step, what)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    try:
        saved = ckpt.manager.item_metadata(step).tree

        def abstract(meta):
            return jax.ShapeDtypeStruct(tuple(meta.shape), meta.dtype, sharding=device)

        target = {k: jax.tree.map(abstract, saved[k]) for k in ("params", "batch_stats")}
        variables, _ = _partial_restore(ckpt, step, target, device)
    finally:
        ckpt.close()
    return variables, step


def _partial_restore(ckpt: Checkpointer, step: int, target: dict, sharding) -> tuple[dict, int]:
    """`params` and `batch_stats` of `target`'s structure from step `step` (orbax partial
    restore: nothing else is read)."""
    item = {
        "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding),
        "params": target["params"],
        "batch_stats": target["batch_stats"],
    }
    with ocp.PyTreeCheckpointer() as reader:
        restored = reader.restore(
            os.path.join(ckpt.directory, str(step), ITEM),
            args=ocp.args.PyTreeRestore(
                item=item,
                restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                partial_restore=True,
            ),
        )
    integrity.verify(ckpt.directory, step, restored)
    variables = {"params": restored["params"], "batch_stats": restored["batch_stats"]}
    return variables, int(restored["step"])


def _sharding_of(tree):
    return jax.tree.leaves(tree)[0].sharding
