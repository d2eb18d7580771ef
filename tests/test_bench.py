"""Bench scripts run at tiny shapes, so that a bench cannot break unnoticed (their figures
are measured by hand, never asserted here)."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_step_bench_runs_at_tiny_shapes():
    """bench/train_step.py --tiny: the real train step of both families on the smoke
    configs (and the PyTorch eager baseline where torch is installed); the last line is
    the JSON report with a finite loss for each side."""
    only = "jax_f32,torch"
    try:
        import torch  # noqa: F401
    except ImportError:
        only = "jax_f32"
    done = subprocess.run(
        [sys.executable, "bench/train_step.py", "--tiny", "--steps", "1", "--warmup", "0",
         "--only", only],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["size"] == "32x64"
    for model in ("strf", "dsanet"):
        for side, row in report[model].items():
            if isinstance(row, dict):
                assert row["clips_per_s"] > 0 and abs(row["loss"]) < 1e6, (model, side)
