"""Each program compiled once: a typical test module, run on its own with a fresh
persistent compilation cache that keeps every program, asks for no program twice.

Inside one process JAX's jit cache answers a repeated call without compiling; a program
that reaches the compiler a second time (a persistent-cache hit, see
`tests/compile_count.py`) is one that a test made again: a new `jax.jit` wrapper per
call, or an eager computation on fresh closures. Across processes the suite shares the
persistent cache (conftest.py), but each repeat still costs a trace, a lowering and a
cache read, and usually means the test compiles more than it needs to."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Modules whose tests build, initialise, run and differentiate models and losses.
TYPICAL = ["tests/test_heads.py", "tests/test_losses.py"]


@pytest.mark.slow
def test_a_typical_module_compiles_each_program_once(tmp_path):
    out = tmp_path / "counts.json"
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "REIDJAX_COMPILE_COUNT_OUT": str(out),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.compile_count", "-p",
         "no:cacheprovider", "-p", "no:xdist", *TYPICAL],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    counts = json.loads(out.read_text())
    assert counts["compiles"] > 0 and counts["requests"] >= counts["compiles"], counts
    assert counts["repeats"] == 0, f"compiled again: {counts['repeated']}"
