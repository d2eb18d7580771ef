"""Stopping a run at its first non-finite step, without a host sync per step.

The train step checks its loss terms and gradient norm on the device before the update and
applies no update when any is not finite (the check is folded into the update's own
elementwise pass over the state). `DivergenceGuard` keeps, on the device, the first step
whose loss terms, gradient norm or parameter norm were not finite, and which; the loop
reads it (one scalar copy) only before a checkpoint is written and at logging steps. A
non-finite state is therefore never saved, and the run stops naming the step and the
values, and the newest kept checkpoint from before the blow-up: a state can be finite and
already ruined (parameters grown by orders of magnitude), and resuming from it diverges
again. "Before the blow-up" is judged by the parameter norm: within `BLOW_UP_FACTOR` of
the norm the run started from (a healthy run moves it by a few per cent to a few times;
a blow-up by orders of magnitude).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from reidjax.errors import UserError

# The global L2 norm of a parameter tree, as one compiled program: run eagerly, optax's
# tree norm compiles a handful of tiny programs per distinct leaf shape (9.6 s at the
# start of the smoke run on 8 CPU devices).
params_norm = jax.jit(optax.tree.norm)

NORMS = ("grad_norm", "param_norm")
BLOW_UP_FACTOR = 10.0


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

    def check(self, advice: Callable[[], str]) -> None:
        """Raises `TrainingDivergedError` if a step so far was not finite.

        Args:
            advice: what to do next (called only when the run diverged), e.g.
                `rollback_advice`.
        """
        first = jax.device_get(self.first)
        step = int(first["step"])
        if step < 0:
            return
        names = [k for k, b in first["bad"].items() if b]
        raise TrainingDivergedError(
            f"step {step}: {', '.join(names)} not finite; stopping before any non-finite "
            f"state is saved. {advice()}"
        )


def newest_sound(norms: dict[int, float], start_norm: float) -> int | None:
    """The newest step whose parameter norm is finite and within `BLOW_UP_FACTOR` of the
    norm the run started from, or None."""
    limit = BLOW_UP_FACTOR * start_norm
    sound = [s for s, n in norms.items() if math.isfinite(n) and n <= limit]
    return max(sound) if sound else None


def rollback_advice(ckpt, abstract_state, start_norm: float) -> str:
    """Where to go on from after a divergence: the newest kept checkpoint from before the
    blow-up (`newest_sound`, reading each kept checkpoint's parameters) and the command
    that continues from it at a lower learning rate, in a new workdir (a resume of this
    one keeps the run's learning rate)."""
    norms = {}
    for step in ckpt.steps():
        try:
            norms[step] = float(params_norm(ckpt.restore(abstract_state, step).params))
        except Exception:  # unreadable: not a place to go on from
            continue
    sound = newest_sound(norms, start_norm)
    kept = ", ".join(f"step {s}: {n:.3g}" for s, n in sorted(norms.items())) or "none"
    if sound is None:
        return (
            f"No kept checkpoint predates the blow-up (parameter norm {start_norm:.3g} at the "
            f"start; {kept}): start a new run (a new --workdir) with a lower "
            "config.optim.lr, or check the data"
        )
    return (
        f"The newest checkpoint before the blow-up is step {sound} (parameter norm "
        f"{norms[sound]:.3g}; {start_norm:.3g} at the start; {kept}): go on from it with a "
        f"lower learning rate in a new workdir: --workdir NEW "
        f"--config.resume={ckpt.directory}/{sound} --config.optim.lr=LOWER"
    )
