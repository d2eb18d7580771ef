"""Optimizers and learning-rate schedules (optax) from an `OptimSpec` (the set-up makes it
from `config.optim`: `reidjax.experiment.optim_spec`).

`adam` reproduces `torch.optim.Adam(weight_decay=wd)`: the decay is added to the gradient
before the moment estimates (coupled L2, the recipe of both papers). `adamw` is decoupled
decay (`torch.optim.AdamW`); `sgd` is SGD with momentum 0.9 and coupled decay
(`torch.optim.SGD`). Schedules are given in epochs and converted to steps.
"""

from __future__ import annotations

import dataclasses

import jax
import optax

from reidjax.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """The optimizer, its decay and its schedule in epochs (the keys of `config.optim`)."""

    name: str = "adam"  # adam (coupled L2) | adamw (decoupled) | sgd (momentum 0.9)
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 5e-4
    lr_decay_every_epochs: int = 50  # step decay by lr_decay_factor every N epochs
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0  # linear warm-up from lr/100
    grad_clip_norm: float = 0.0  # 0: off
    freeze: tuple[str, ...] = ()  # '/'-joined parameter path prefixes kept as loaded


def decay_steps(optim: OptimSpec, steps_per_epoch: int, epochs: int) -> list[int]:
    """The steps at which the learning rate is multiplied by `lr_decay_factor`: every
    `lr_decay_every_epochs` epochs of `steps_per_epoch` steps, up to `epochs`."""
    every = optim.lr_decay_every_epochs
    if every <= 0:
        return []
    return [k * every * steps_per_epoch for k in range(1, epochs // every + 1)]


def learning_rate_schedule(optim: OptimSpec, steps_per_epoch: int, epochs: int) -> optax.Schedule:
    """Step decay by `lr_decay_factor` every `lr_decay_every_epochs` (torch `StepLR` stepped
    per epoch), after an optional linear warmup from lr/100 over `warmup_epochs`."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    boundaries = {
        step: optim.lr_decay_factor for step in decay_steps(optim, steps_per_epoch, epochs)
    }
    schedule = optax.piecewise_constant_schedule(optim.lr, boundaries)
    warmup = int(optim.warmup_epochs * steps_per_epoch)
    if warmup > 0:
        ramp = optax.linear_schedule(optim.lr / 100, optim.lr, warmup)
        schedule = optax.join_schedules([ramp, schedule], [warmup])
    return schedule


def build_optimizer(
    optim: OptimSpec, steps_per_epoch: int, epochs: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The configured optimizer and its schedule.

    Raises:
        ConfigError: an unknown optimizer name, listing the valid ones.
    """
    if optim.name not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer {optim.name!r}; valid: {list(OPTIMIZERS)}")
    schedule = learning_rate_schedule(optim, steps_per_epoch, epochs)
    parts = []
    if optim.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim.grad_clip_norm))
    if optim.name == "adam":
        parts += [
            optax.add_decayed_weights(optim.weight_decay),
            optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
            optax.scale_by_learning_rate(schedule),
        ]
    elif optim.name == "adamw":
        parts += [
            optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
            optax.add_decayed_weights(optim.weight_decay),
            optax.scale_by_learning_rate(schedule),
        ]
    else:
        parts += [
            optax.add_decayed_weights(optim.weight_decay),
            optax.trace(decay=0.9),
            optax.scale_by_learning_rate(schedule),
        ]
    tx = optax.chain(*parts)
    if optim.freeze:
        tx = freeze(tx, tuple(optim.freeze))
    return tx, schedule


def parameter_name(path) -> str:
    """`backbone/layer1_0/conv1/kernel` for a tree path."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def freeze(tx: optax.GradientTransformation, prefixes: tuple[str, ...]):
    """`tx` for the parameters whose name does not start with one of `prefixes`; zero
    updates (no optimizer state) for those that do.

    Raises:
        ConfigError: a prefix that names no parameter (at `init`).
    """

    def labels(params):
        names = jax.tree_util.tree_map_with_path(lambda p, _: parameter_name(p), params)
        unused = [p for p in prefixes if not any(n.startswith(p) for n in jax.tree.leaves(names))]
        if unused:
            raise ConfigError(
                f"config.optim.freeze: {unused} name no parameter (names look like "
                f"{jax.tree.leaves(names)[0]!r})"
            )
        return jax.tree.map(lambda n: "frozen" if n.startswith(prefixes) else "train", names)

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
