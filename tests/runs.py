"""Helpers of the tests that train: the smoke config on a test's own data, and what a
finished run left in its workdir."""

import json
import os
import socket

import jax
import numpy as np
from flax import traverse_util

from reidjax import experiment
from reidjax.training import restore
from tests.shared import smoke_config
from tests.xla_flags import xla_flags


def synthetic_config(tmp_path, **overrides):
    """The synthetic smoke config on `tmp_path/data`, on one device unless `mesh.data` is
    given (the tests about sharding say how many)."""
    return smoke_config("synthetic", tmp_path / "data", **{"mesh.data": 1, **overrides})


def variables_of(workdir, config, devices=1, folder="checkpoints", step=None):
    """A checkpoint's step and flat model variables (the latest, or `step`), restored on
    `devices`."""
    model = experiment.setup(config, train=False).model
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("data",))
    where = os.path.join(workdir, folder)
    variables, step = restore.restore_variables(model, config, where, mesh, step)
    return step, traverse_util.flatten_dict(jax.device_get(variables), sep="/")


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for key, value in a.items():
        np.testing.assert_array_equal(b[key], value, err_msg=key)


def logged_steps(workdir):
    return [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_process_env(port: int, rank: int, **extra) -> dict:
    """The environment of process `rank` of a 2-process jax.distributed run on this
    machine: 2 CPU devices each, gloo collectives, the coordinator on 127.0.0.1:`port`."""
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=xla_flags(2),
        JAX_PLATFORMS="cpu",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID=str(rank),
        **extra,
    )
    return env
