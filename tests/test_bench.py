"""Every bench script runs at tiny shapes, so that a bench cannot break unnoticed. Their
figures are measured by hand on purpose (docs/benchmarks.md) and never asserted here: only
that each runs to its JSON line with the fields it promises."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.xla_flags import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]

try:
    import torch  # noqa: F401

    TORCH = ["torch"]
except ImportError:  # the PyTorch sides need requirements-dev.txt
    TORCH = []

# script -> (arguments, a key the JSON line must hold)
BENCHES = {
    # One model: DSANet goes through the same code (its train step is the shared run's).
    "train_step.py": (["--steps", "1", "--warmup", "0", "--models", "strf", "--only",
                       ",".join(["jax_f32", *TORCH])], "strf"),
    # The C2D baseline's smoke config: only that the script runs is tested here, and its
    # two train steps (one per remat mode) compile faster than STRF's.
    "accelerator.py": (["--config", "configs/c2d_mars.py:smoke"], "train_step"),
    "backbone_step.py": (["--steps", "1", "--warmup", "0", "--only", ",".join(["jax_f32", *TORCH])],
                         "jax_f32"),
    "checkpoint_digest.py": (["--repeats", "1"], "digest_share_of_save"),
    "dtype_compare.py": (["--part", "fullsize", "--steps", "1"], "max_rel_diff"),
    "eval_rate.py": (["--steps", "1", "--warmup", "0", "--only", ",".join(["jax_f32", *TORCH])],
                "jax_f32"),
    "data_rate.py": (["--skip_torch"] if not TORCH else [], "train_inline"),
    "metrics_rate.py": ([], "mars"),
    "strf_memory.py": (["--batch", "2"], "strf_extra_temp_mib"),
}  # fmt: skip


def run_bench(script, args):
    # One CPU device: a bench uses every local device, and 8 fake ones on 2 cores only
    # make its tiny run slower (its figures are not what is tested here).
    env = {**os.environ, "XLA_FLAGS": xla_flags(1)}
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--tiny", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=900, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(BENCHES))
def test_bench_runs_at_tiny_shapes(script):
    args, key = BENCHES[script]
    report = run_bench(script, args)
    assert key in report, sorted(report)
    if script == "accelerator.py":  # both remat modes timed, the default first
        assert list(report["train_step_by_remat"]) == ["convs", "none"]
        assert report["train_step"]["remat"] == "convs"


def test_every_bench_script_is_covered():
    """A new bench script must join `BENCHES` (bn_unbiased_variance needs a trained run:
    tests/test_inference.py runs it on one)."""
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - {"common.py", "torch_resnet.py"}
    assert scripts == set(BENCHES) | {"bn_unbiased_variance.py"}
