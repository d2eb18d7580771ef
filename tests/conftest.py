"""Test setup: 8 fake CPU devices (set before JAX is imported), one compilation cache for
the session, and shared fixtures."""

import importlib.util
import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

# Many tests (and the train.py / eval.py processes they start) compile the same programs:
# a persistent compilation cache for the session compiles each once. Exported through the
# environment, so that subprocesses share it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="reidjax-test-jit-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import jax
import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


def pytest_collection_modifyitems(config, items):
    """Tests marked `torch` are skipped, with the reason, when PyTorch is not installed."""
    if importlib.util.find_spec("torch") is not None:
        return
    skip = pytest.mark.skip(reason="needs PyTorch: pip install -r requirements-dev.txt")
    for item in items:
        if "torch" in item.keywords:
            item.add_marker(skip)
