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
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves every `save_every` steps (and when forced), keeps the last `keep`."""

    def __init__(self, directory: str, keep: int = 3, save_every: int = 1000):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=save_every, create=True
        )
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

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

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
