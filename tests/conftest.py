"""Test setup: 8 fake CPU devices and the tests' compiler flags (tests/xla_flags.py, set
before JAX is imported), one compilation cache for the session, and shared fixtures."""

import importlib.util
import os
import tempfile

from tests.xla_flags import CPU_OPTIMISATION, xla_flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla_flags(8)).strip()
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " " + CPU_OPTIMISATION

# Many tests (and the train.py / eval.py processes they start) compile the same programs:
# a persistent compilation cache for the session compiles each once. Exported through the
# environment, so that subprocesses share it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="reidjax-test-jit-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import jax
import numpy as np
import pytest

from tests import fixtures
from tests.shared import trained_run


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# One trained smoke run per model family, trained once per test run and shared by every
# test that only reads a run (evaluation, search, export, releases, tracks, t-SNE, ...).
@pytest.fixture(scope="session")
def dsanet_run(tmp_path_factory):
    """DSANet on the synthetic dataset: the library's own smoke run (configs/synthetic.py)."""
    return trained_run(tmp_path_factory, "synthetic")


@pytest.fixture(scope="session")
def baseline_run(tmp_path_factory):
    """The C2D baseline on the MARS fixture (configs/c2d_mars.py:smoke)."""
    return trained_run(tmp_path_factory, "c2d_mars", fixtures.prepare)


@pytest.fixture(scope="session")
def strf_run(tmp_path_factory):
    """STRF-P3D-C on the DukeMTMC-VideoReID fixture with dense training pieces
    (configs/strf_dukev.py:smoke)."""
    return trained_run(tmp_path_factory, "strf_dukev", fixtures.prepare)


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


# Started first, longest first: with `--maxschedchunk 1` (Makefile) each xdist worker takes
# the next test when it is free, so the longest tests must not come last, when the other
# worker has nothing left to run beside them.
FIRST = (
    "tests/test_hosts.py::test_preempted_twice_then_killed_then_skewed_start_resumes_bitwise",
    # the shared smoke runs, which many later tests read
    "tests/test_smoke_configs.py::test_one_smoke_run_per_family_trains_and_evaluates",
)


def _rank(item) -> tuple[int, int]:
    for i, prefix in enumerate(FIRST):
        if item.nodeid.startswith(prefix):
            return (0, i)
    return (1, 0) if "slow" in item.keywords else (2, 0)


def pytest_collection_modifyitems(config, items):
    """The tests in `FIRST`, then the other slow ones, then the rest (a stable sort: the
    collection order within each). Tests marked `torch` are skipped, with the reason, when
    PyTorch is not installed."""
    items.sort(key=_rank)
    if importlib.util.find_spec("torch") is not None:
        return
    skip = pytest.mark.skip(reason="needs PyTorch: pip install -r requirements-dev.txt")
    for item in items:
        if "torch" in item.keywords:
            item.add_marker(skip)
