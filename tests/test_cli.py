"""train.py and eval.py as a user runs them: the start-up report, eval.py from a workdir."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(*args):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False,
        env=dict(os.environ),
    )  # fmt: skip


def test_train_reports_and_eval_from_the_workdir_alone(tmp_path):
    """train.py prints the start-up report, compiles before the first progress line (whose
    clips/s leaves the compilation out), and `eval.py --workdir W` without --config
    reproduces the training-time evaluation from W/config.json, overrides included."""
    workdir, data = tmp_path / "run", tmp_path / "data"
    train = run(
        "train.py", "--config", "configs/synthetic.py:smoke", "--workdir", str(workdir),
        f"--config.dataset.data_dir={data}", "--config.train.log_every=1",
        "--config.eval.max_rank=5",  # an override eval.py must pick up from config.json
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    out = train.stdout
    for line in (
        "config: configs/synthetic.py:smoke --config.dataset.data_dir=",
        "--config.eval.max_rank=5",
        f"workdir: {workdir}",
        "building the synthetic dataset ids16_cams4_seed0_32x64",
        "dsanet (tiny, c2d): 169,479 parameters; synthetic (16 ids, 4 cameras, seed 0)",
        "data: 23 training tracklets of 8 identities; 2 steps per epoch of 8 clips x 2 frames",
        "schedule: 4 steps (2.0 epochs)",
        f"mesh data=8; workdir {workdir}",
        "start: from scratch (config.init.imagenet=none)",
        "compiling the train step... ",
    ):
        assert line in out, (line, out)
    compile_s = float(re.search(r"compiling the train step\.\.\. ([\d.]+) s", out).group(1))
    assert out.index("compiling the train step") < out.index("step 1/4")
    first = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])
    # The first step's time (8 clips / clips_per_s) is far below the compilation's: had the
    # clock included it, 8 / clips_per_s would exceed compile_s.
    assert 8 / first["clips_per_s"] < compile_s / 3, (first["clips_per_s"], compile_s)
    trained_text = (workdir / "eval" / "results.json").read_text()
    trained = json.loads(trained_text)
    assert len(trained["cmc"]) == 5 and trained["written_by"] == "train.py"
    first_eval = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
    assert first_eval["eval/mAP"] == pytest.approx(trained["mAP"], abs=0.005)  # percent too

    evaluated = run("eval.py", "--workdir", str(workdir))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"report: {workdir / 'eval' / 'step4'}" in evaluated.stdout
    again = json.loads((workdir / "eval" / "step4" / "results.json").read_text())
    assert set(again) == set(trained) and again["written_by"] == "eval.py"
    for key in ("R1", "R5", "mAP", "mINP", "cmc", "num_queries", "dataset", "checkpoint"):
        assert again[key] == trained[key], key
    assert (workdir / "eval" / "results.json").read_text() == trained_text  # not overwritten
    missing = run("eval.py", "--workdir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.count("error: no config.json in") == 1


def test_compilation_cache_folder_from_the_environment(monkeypatch, tmp_path):
    """Every command turns on JAX's persistent compilation cache: $REIDJAX_COMPILATION_CACHE
    (default ~/.cache/reidjax/xla), `off` for none; JAX's own variable wins when set."""
    import jax

    from reidjax import cli

    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
        monkeypatch.setenv("REIDJAX_COMPILATION_CACHE", str(tmp_path / "xla"))
        assert cli.compilation_cache() == str(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
        monkeypatch.setenv("REIDJAX_COMPILATION_CACHE", "off")
        assert cli.compilation_cache() is None
        monkeypatch.delenv("REIDJAX_COMPILATION_CACHE")
        assert cli.compilation_cache() == os.path.expanduser("~/.cache/reidjax/xla")
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
        assert cli.compilation_cache() == str(tmp_path / "jax")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
