"""The train state and its shapes: what a checkpoint holds, created or only described.

Shapes first (`jax.eval_shape` of the init, nothing computed), shardings from the mesh,
then the state is created or restored directly into them (`reidjax.training.restore`).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from reidjax.models import ReIDModel
from reidjax.models.factory import dummy_clips
from reidjax.runtime import sharding


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint holds: the step, parameters, BN statistics, optimizer."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict:
        """The model variables (`params`, `batch_stats`), as `apply` and `predict` take them."""
        return {"params": self.params, "batch_stats": self.batch_stats}


def init_variables(model: ReIDModel, config: ml_collections.ConfigDict) -> dict:
    """The model's initial variables (`config.seed`), on the default device."""
    # The variables are created replicated, so the partitionable threefry buys nothing
    # here; the classic one compiles the init 2-3x faster.
    with jax.threefry_partitionable(False):
        return jax.jit(model.init)(jax.random.key(config.seed), dummy_clips(config))


def state_of(variables: dict, tx: optax.GradientTransformation) -> TrainState:
    """The step-0 train state of `variables` (optimizer state from `tx.init`)."""
    params = variables["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, variables["batch_stats"], tx.init(params))


def with_sharding(tree, sharding_: jax.sharding.Sharding):
    """`ShapeDtypeStruct`s of `tree`'s leaves carrying `sharding_`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_), tree)


def abstract_variables(model: ReIDModel, config: ml_collections.ConfigDict, mesh) -> dict:
    """Shapes, dtypes and (replicated) shardings of the model's variables; nothing is
    computed."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(config))
    return with_sharding(shapes, sharding.replicated(mesh))


def abstract_state(
    model: ReIDModel, config: ml_collections.ConfigDict, tx: optax.GradientTransformation, mesh
) -> TrainState:
    """Shapes, dtypes and shardings of the train state (data parallel: replicated)."""
    shapes = jax.eval_shape(
        lambda: state_of(model.init(jax.random.key(0), dummy_clips(config)), tx)
    )
    return with_sharding(shapes, sharding.replicated(mesh))


def create_state(variables: dict, tx: optax.GradientTransformation, mesh) -> TrainState:
    """The step-0 train state of `variables`, placed replicated on `mesh`."""
    make = jax.jit(lambda v: state_of(v, tx), out_shardings=sharding.replicated(mesh))
    return make(variables)
