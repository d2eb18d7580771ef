"""Device mesh and shardings (data parallelism over a `jax.sharding.Mesh`); the
multi-process start-up is `reidjax.training.hosts`."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reidjax.errors import ConfigError


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
    """A 1-D `("data",)` mesh over `config.mesh.data` devices (-1: all of them)."""
    devices = jax.devices()
    n = config.mesh.data if config.mesh.data > 0 else len(devices)
    if n > len(devices):
        raise ConfigError(f"config.mesh.data={n} but only {len(devices)} devices are visible")
    return Mesh(np.asarray(devices[:n]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split over the `data` axis."""
    return NamedSharding(mesh, PartitionSpec("data"))


def check_batch(global_batch: int, mesh: Mesh) -> None:
    """Raises a clear error when the global batch does not split over the devices."""
    devices = mesh.shape["data"]
    if global_batch % devices:
        raise ConfigError(
            f"global batch {global_batch} (train.ids_per_batch x train.clips_per_id) is not "
            f"divisible by the {devices} devices of the data mesh; change the batch or set "
            "--config.mesh.data"
        )


def check_eval_batch(batch_size: int, mesh: Mesh) -> None:
    """Raises a clear error when the evaluation batch does not split over the devices and
    processes (checked at set-up, not at the first evaluation)."""
    devices, hosts = mesh.shape["data"], jax.process_count()
    if batch_size % devices or batch_size % hosts:
        raise ConfigError(
            f"config.eval.batch_size={batch_size} is not divisible by the {devices} devices "
            f"(and {hosts} processes) of the data mesh; set --config.eval.batch_size to a "
            "multiple of it"
        )
