"""Orbax checkpoints of the train state: atomic, asynchronous, keep-last-k.

The checkpoint holds the state only (step, params, BN statistics, optimizer state);
hyper-parameters always come from the config. Orbax writes each step to a temporary
folder and renames it when complete, so an interrupted save never leaves a readable
half checkpoint. Restoring takes the target shardings, so a checkpoint saved on 8 devices
restores on 1 (or on another mesh).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by another model (other parameter names or shapes)."""


class Checkpointer:
    """Saves every `save_every` steps (and when forced), keeps the last `keep`."""

    def __init__(self, directory: str, keep: int = 3, save_every: int = 1000, create: bool = True):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=save_every, create=create
        )
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, force: bool = False) -> bool:
        """Starts an asynchronous save of `state` at `step` (when due or forced)."""
        return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def restore(self, target, step: int | None = None):
        """Restores into the structure, shapes and shardings of `target` (a state or its
        `jax.ShapeDtypeStruct`s)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
            target,
        )
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

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
        have = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(saved, sep="/").items()}
        want = {
            k: tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(params, sep="/").items()
        }
        problems = [f"missing {k} {want[k]}" for k in sorted(want.keys() - have.keys())]
        problems += [f"unexpected {k} {have[k]}" for k in sorted(have.keys() - want.keys())]
        problems += [
            f"{k}: saved {have[k]}, model {want[k]}"
            for k in sorted(want.keys() & have.keys())
            if have[k] != want[k]
        ]
        if problems:
            shown = "; ".join(problems[:6]) + (
                f"; ... {len(problems) - 6} more" * (len(problems) > 6)
            )
            raise CheckpointMismatchError(
                f"the checkpoint {self.directory}/{step} was written by a different model "
                f"({len(problems)} parameter differences: {shown}). Evaluate it with the "
                "config (and --config overrides) it was trained with."
            )

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def restore_checked(directory: str, target, step: int | None = None, what: str = ""):
    """Restores `target` (a train state or its abstract shapes) from `directory` after
    checking that the checkpoint's parameters have the names and shapes of `target.params`.

    Raises:
        FileNotFoundError: no such folder or step (`what` starts the message).
        CheckpointMismatchError: the checkpoint was written by another model.
    """
    prefix = f"{what}: " if what else ""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{prefix}no checkpoint folder {directory}")
    ckpt = Checkpointer(directory, create=False)
    try:
        steps = list(ckpt.manager.all_steps())
        step = ckpt.latest_step() if step is None else step
        if step is None or step not in steps:
            at = "" if step is None else f" at step {step}"
            raise FileNotFoundError(f"{prefix}no checkpoint{at} in {directory} (steps: {steps})")
        ckpt.check_matches(target.params, step)
        return ckpt.restore(target, step)
    finally:
        ckpt.close()


class BestCheckpointer:
    """Keeps the one checkpoint with the highest evaluation `metric` (e.g. mAP)."""

    def __init__(self, directory: str, metric: str = "mAP"):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m[metric], best_mode="max", create=True
        )
        self.metric = metric
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, value: float) -> None:
        self.manager.save(
            step, args=ocp.args.StandardSave(state), metrics={self.metric: value}, force=True
        )

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
