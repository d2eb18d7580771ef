"""Each program compiled once: a typical test module, run on its own with a fresh
persistent compilation cache, asks the compiler for no program twice.

Inside one process JAX's jit cache answers a repeated call without compiling. A program
that reaches the compiler a second time in the same process (seen as a persistent-cache
hit, see `tests/compile_count.py`) is one that a test made again: a new `jax.jit` wrapper
per call, or a function re-traced on fresh closures. Across processes the suite shares the
persistent cache (conftest.py), but each repeat still costs a trace, a lowering and a cache
read, and usually means the test compiles more than it needs to.

The fresh cache keeps programs that took 0.2 s or more to compile: models, steps and
losses (seconds each on a 2-core CPU). Single operations run eagerly compile in
milliseconds; JAX itself compiles a few of them twice (a broadcast or a transpose reached
through two paths), which no test can avoid, so they stay out of the count. Which programs
are counted depends on the machine's speed only near that line; a counted repeat is always
a real one."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A module whose tests build, initialise, run and differentiate models with their losses.
TYPICAL = "tests/test_heads.py"
# Planted beside it: one forward pass jitted twice through a new wrapper (the avoidable
# compile the count must catch).
PLANTED = """
import jax, jax.numpy as jnp
from reidjax.config.config_lib import base_config
from reidjax.experiment import build_module


def test_planted_repeat():
    config = base_config()
    config.model.arch, config.model.num_classes = "tiny", 4
    model = build_module(config)
    clips = jnp.zeros((2, 2, 32, 16, 3))
    variables = jax.jit(model.init)(jax.random.key(0), clips)
    for _ in range(2):
        jax.jit(lambda v, x: model.apply(v, x))(variables, clips)
"""


@pytest.mark.slow
def test_a_typical_module_compiles_each_program_once(tmp_path):
    planted = tmp_path / "test_planted_repeat.py"
    planted.write_text(PLANTED)
    out = tmp_path / "counts.json"
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
        "REIDJAX_COMPILE_COUNT_OUT": str(out),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", "pyproject.toml", "--rootdir", str(ROOT),
         "-p", "tests.compile_count", "-p", "no:cacheprovider", "-p", "no:xdist", TYPICAL,
         str(planted)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    counts = json.loads(out.read_text())
    assert counts["compiles"] > 0 and counts["requests"] >= counts["compiles"], counts
    # The planted repeat, and nothing of the module's own.
    assert counts["repeated"] == ["jit__lambda"], f"compiled twice: {counts['repeated']}"
