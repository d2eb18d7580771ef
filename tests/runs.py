"""Helpers of the tests that train: the smoke config on a test's own data, and what a
finished run left in its workdir."""

import json
import os

import jax
import numpy as np
from flax import traverse_util

from reidjax import experiment, restore
from reidjax.config_lib import load_config


def synthetic_config(tmp_path, **overrides):
    config = load_config("synthetic", "smoke")
    with config.unlocked():
        config.dataset.data_dir = str(tmp_path / "data")
        for key, value in overrides.items():
            section, name = key.split(".")
            config[section][name] = value
    return config


def variables_of(workdir, config, devices=1, folder="checkpoints"):
    """The latest checkpoint's step and flat model variables, restored on `devices`."""
    model = experiment.setup(config, train=False).model
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("data",))
    variables, step = restore.restore_variables(model, config, os.path.join(workdir, folder), mesh)
    return step, traverse_util.flatten_dict(jax.device_get(variables), sep="/")


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for key, value in a.items():
        np.testing.assert_array_equal(b[key], value, err_msg=key)


def logged_steps(workdir):
    return [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]
