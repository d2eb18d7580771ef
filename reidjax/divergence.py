"""Stopping a run at its first non-finite step, without a host sync per step.

The train step checks its loss terms and gradient norm on the device before the update and
applies no update when any is not finite (the check is folded into the update's own
elementwise pass over the state). `DivergenceGuard` keeps, on the device, the first step
whose loss terms, gradient norm or parameter norm were not finite, and which; the loop
reads it (one scalar copy) only before a checkpoint is written and at logging steps. A
non-finite state is therefore never saved, and the run stops naming the step and the
values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reidjax.errors import UserError

NORMS = ("grad_norm", "param_norm")


class TrainingDivergedError(UserError, FloatingPointError):
    """A loss term, the gradient or the parameters stopped being finite."""


def checked(metrics: dict) -> dict:
    """The metrics that must stay finite: every loss term and the two norms."""
    return {k: v for k, v in metrics.items() if k.startswith("loss/") or k in NORMS}


def all_finite(metrics: dict) -> jax.Array:
    """True when every checked metric is finite (a scalar bool, on the device)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in checked(metrics).values()]))


def _track(first: dict, metrics: dict) -> dict:
    bad = {k: ~jnp.all(jnp.isfinite(v)) for k, v in checked(metrics).items()}
    is_first = (first["step"] < 0) & jnp.any(jnp.stack(list(bad.values())))
    return {
        "step": jnp.where(is_first, metrics["step"], first["step"]),
        "bad": {k: jnp.where(is_first, b, first["bad"][k]) for k, b in bad.items()},
    }


class DivergenceGuard:
    """The first non-finite step of a run, tracked on the device.

    Args:
        metrics: one step's metrics (shapes and names only are used).
    """

    def __init__(self, metrics: dict):
        self.first = {
            "step": jnp.asarray(-1, jnp.int32),
            "bad": {k: jnp.asarray(False) for k in checked(metrics)},
        }
        self._track = jax.jit(_track)

    def update(self, metrics: dict) -> None:
        """Records one step's metrics (asynchronous: nothing is copied to the host)."""
        self.first = self._track(self.first, metrics)

    def check(self, last_checkpoint: int | None) -> None:
        """Raises `TrainingDivergedError` if a step so far was not finite.

        Args:
            last_checkpoint: the newest checkpoint step on disk, for the message.
        """
        first = jax.device_get(self.first)
        step = int(first["step"])
        if step < 0:
            return
        names = [k for k, b in first["bad"].items() if b]
        kept = "none" if last_checkpoint is None else f"step {last_checkpoint}"
        raise TrainingDivergedError(
            f"step {step}: {', '.join(names)} not finite; stopping before any non-finite "
            f"state is saved (last checkpoint: {kept}). Lower config.optim.lr (or check the "
            "data) and run again"
        )
