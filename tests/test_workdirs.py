"""Workdirs: every file of a run through the `gs://` code path; the lock never follows a
link."""

import json

import numpy as np
import pytest

from reidjax.config import run_config
from reidjax.errors import ConfigError, UserError
from reidjax.evaluation import eval_lib
from reidjax.training import runlock, train_lib
from tests.runs import logged_steps, synthetic_config


@pytest.mark.slow
def test_bucket_workdir_code_path_on_a_local_disk(tmp_path, monkeypatch):
    """Every workdir file of a run (config.json, metrics.jsonl rewritten whole, the report,
    its pictures, features.npz) written and read through the bucket code path of
    `reidjax.runtime.workdir_io` (etils.epath, no local temp-and-rename, no file lock), here on a
    local disk: a real gs:// bucket was not reachable from the test machines. The run, its
    resume and eval.py's workdir-only evaluation behave as on a plain path."""
    from reidjax.runtime import workdir_io

    monkeypatch.setattr(workdir_io, "is_local", lambda path: False)
    workdir = tmp_path / "bucket" / "run"
    config = synthetic_config(tmp_path, **{"train.num_steps": 3, "train.log_every": 1})
    with config.unlocked():
        config.train.checkpoint_every = 2
    train_lib.train_and_evaluate(config, str(workdir))
    assert logged_steps(workdir) == [1, 2, 3, 3]  # three steps and the final evaluation
    assert not list(workdir.rglob("*.tmp")) and not (workdir / ".lock").exists()
    with config.unlocked():
        config.train.num_steps = 4
    train_lib.train_and_evaluate(config, str(workdir))  # resumes from step 3
    assert logged_steps(workdir) == [1, 2, 3, 3, 4, 4]
    numbers = eval_lib.evaluate_workdir(
        run_config.load_run_config(str(workdir)), str(workdir), save_features=True
    )
    report = workdir / "eval" / "step4"
    assert json.loads((report / "results.json").read_text())["mAP"] == numbers["mAP"]
    assert (report / "retrieval.png").stat().st_size > 10_000
    with np.load(report / "features.npz") as saved:
        assert saved["query_features"].shape[0] == numbers["num_queries"]


def test_the_lock_never_follows_a_symlink(tmp_path):
    """`WORKDIR/.lock` planted as a link to another file: refused in one line, and the
    file it points at is left exactly as it was (it was truncated and overwritten)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / ".lock").symlink_to(victim)
    with pytest.raises(UserError, match=r"\.lock is a symbolic link"):
        runlock.WorkdirLock(str(workdir)).acquire()
    assert victim.read_text() == "precious\n"
    (workdir / ".lock").unlink()
    (workdir / ".lock").mkdir()  # not a regular file
    with pytest.raises(UserError, match="lock"):
        runlock.WorkdirLock(str(workdir)).acquire()


@pytest.mark.slow
def test_a_resume_with_other_hyper_parameters_is_refused_by_name(tmp_path):
    """Resuming a workdir with a changed training value stops before anything is read or
    written, naming each changed key and the way to start a new run from the checkpoint;
    config.json still records the run's values. Keys that do not change what is trained
    (the stop step, logging, data location) resume."""
    workdir = tmp_path / "run"
    no_eval = {"train.eval_every": -1, "train.num_steps": 2}
    train_lib.train_and_evaluate(synthetic_config(tmp_path, **no_eval), str(workdir))
    saved = (workdir / "config.json").read_text()
    steps = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    changed = synthetic_config(tmp_path, **no_eval, **{"optim.lr": 0.5, "loss.triplet_margin": 1.0})
    with pytest.raises(ConfigError) as caught:
        train_lib.train_and_evaluate(changed, str(workdir))
    message = str(caught.value)
    assert "loss.triplet_margin 0.3 -> 1.0" in message and "optim.lr 0.001 -> 0.5" in message
    assert f"--config.resume={workdir}/checkpoints/2" in message
    assert (workdir / "config.json").read_text() == saved
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == steps
    extended = synthetic_config(tmp_path, **{**no_eval, "train.num_steps": 3, "train.log_every": 1})
    train_lib.train_and_evaluate(extended, str(workdir))
    assert logged_steps(workdir)[-1] == 3
