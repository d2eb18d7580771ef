"""Fault injection: train.py itself, killed, preempted, damaged, starved of disk, doubled,
pointed at another model, diverging. Each case checks the exit status, the one line the
user reads, and that after the documented recovery the final state equals the
uninterrupted run's bitwise (same device count, same program: one device).

The uninterrupted run is trained once per test run (`setup`); a case that starts from a
run stopped at some step starts from a copy of it cut back to that step's checkpoint.
Faults that are the process's own (kill -9, SIGTERM, a second process, a full disk) and
every recovery run `train.py` itself; a refusal that happens before any step is checked in
process, through the library call that train.py makes."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from reidjax import experiment
from reidjax.errors import ConfigError, UserError
from reidjax.evaluation import features
from reidjax.training import restore, runlock, train_lib
from reidjax.training.divergence import TrainingDivergedError
from tests.shared import once, smoke_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 6
PREEMPTED = 75
pytestmark = pytest.mark.slow


def command(workdir, data, *extra, steps=STEPS):
    return [
        sys.executable, str(ROOT / "train.py"), "--config", "configs/synthetic.py:smoke",
        "--workdir", str(workdir), f"--config.dataset.data_dir={data}",
        "--config.train.eval_every=-1", "--config.train.log_every=1",
        f"--config.train.num_steps={steps}", "--config.mesh.data=1", *extra,
    ]  # fmt: skip


def train(workdir, data, *extra, steps=STEPS):
    return subprocess.run(
        command(workdir, data, *extra, steps=steps), cwd=ROOT, capture_output=True, text=True,
        check=False, env=dict(os.environ),
    )  # fmt: skip


def start(workdir, data, *extra, steps=10**6):
    return subprocess.Popen(
        command(workdir, data, *extra, steps=steps), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip


def wait_for_line(process, prefix):
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line {prefix!r}: {process.stderr.read()[-2000:]}")


def config_of(data, **overrides):
    """The config `command` gives train.py, for the same run in process."""
    same = {"train.eval_every": -1, "train.log_every": 1, "train.num_steps": STEPS}
    return smoke_config("synthetic", data, **{**same, "mesh.data": 1, **overrides})


def variables(workdir, data):
    config = config_of(data)
    model = experiment.setup(config, train=False).model
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    folder = os.path.join(workdir, "checkpoints")
    found, step = restore.restore_variables(model, config, folder, mesh)
    return step, traverse_util.flatten_dict(jax.device_get(found), sep="/")


def assert_same_as_uninterrupted(workdir, reference, data):
    step, got = variables(workdir, data)
    assert step == STEPS
    assert got.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The shared dataset and the uninterrupted 6-step run (checkpoints 2, 4 and 6), made
    once per test run."""

    def make(folder):
        whole = train(folder / "whole", folder / "data")
        assert whole.returncode == 0, whole.stderr[-3000:]

    root = once(tmp_path_factory, "faults", make)
    _, reference = variables(root / "whole", root / "data")
    return root / "data", reference


def stopped_at(data, step, to):
    """A copy of the uninterrupted run as a run that stopped at `step`: its checkpoints up
    to that step, its config and logs."""

    def later(folder, names):
        cut = os.path.basename(folder) == "checkpoints"
        return [n for n in names if n == ".lock" or (cut and n.isdigit() and int(n) > step)]

    shutil.copytree(data.parent / "whole", to, ignore=later, dirs_exist_ok=True)
    return to


def test_kill_9_during_a_save_resumes_bitwise(setup, tmp_path):
    data, reference = setup
    process = start(tmp_path, data, "--config.train.checkpoint_every=2")
    try:
        wait_for_line(process, "step 4/")  # the save of step 4 starts right after this line
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert (tmp_path / ".lock").exists()  # left by the killed trainer: it must not block
    again = train(tmp_path, data)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "start: resumed from" in again.stdout
    assert_same_as_uninterrupted(tmp_path, reference, data)
    steps = [int(line.split('"step": ')[1].split(",")[0].split("}")[0])
             for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    assert steps == sorted(set(steps)) == list(range(1, STEPS + 1))  # no step twice


def test_sigterm_saves_exits_75_and_resumes_bitwise(setup, tmp_path):
    """SIGTERM twice, checkpoints every 2 steps: first between checkpoints (at step 1's
    line), then in the run resumed from that stop, right as a checkpoint's save begins
    (at the line of the next even step). Each time the step reached is saved and the
    process exits 75 with one line; the next start resumes from it, and the last run ends
    bitwise equal to the uninterrupted one."""
    data, reference = setup
    saved = [0]
    for _ in range(2):
        due = 1 if saved[-1] == 0 else saved[-1] + 2 - saved[-1] % 2  # the next even step
        process = start(tmp_path, data, "--config.train.checkpoint_every=2")
        try:
            lines = []
            for line in process.stdout:
                lines.append(line)
                if line.startswith(f"step {due}/"):
                    break
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=300)
        finally:
            process.kill()
        assert process.returncode == PREEMPTED, err[-3000:]
        message = last_line(err)
        assert message.startswith("preempted: saved step ") and "run the same command" in message
        assert "Traceback" not in err
        if saved[-1]:
            assert f"start: resumed from {tmp_path}/checkpoints/{saved[-1]}" in "".join(lines)
        saved.append(int(message.split("saved step ")[1].split(";")[0]))
        assert (tmp_path / "checkpoints" / str(saved[-1])).is_dir()
        assert due <= saved[-1] < STEPS, ("".join(lines), saved)
    again = train(tmp_path, data)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {tmp_path}/checkpoints/{saved[-1]}" in again.stdout
    assert_same_as_uninterrupted(tmp_path, reference, data)


def _truncate_largest_data_file(step_dir):
    files = [p for p in (step_dir / "default").rglob("*") if p.is_file() and "/d/" in str(p)]
    biggest = max(files, key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])


def _drop_one_metadata_entry(step_dir):
    path = step_dir / "default" / "_METADATA"
    metadata = json.loads(path.read_text())
    entries = metadata["tree_metadata"]
    del entries[next(k for k in entries if "params" in k and "conv1" in k)]
    path.write_text(json.dumps(metadata))


# Each damage and the plain words the start-up line gives for it.
DAMAGE = {
    "truncated_data": (_truncate_largest_data_file, "a data file is cut short or corrupt"),
    "missing_metadata": (
        lambda d: (d / "default" / "_METADATA").unlink(),
        "its list of arrays, default/_METADATA, is missing",
    ),
    "empty_metadata": (
        lambda d: (d / "default" / "_METADATA").write_text(""),
        "a metadata file is empty or cut short",
    ),
    "metadata_missing_an_entry": (
        _drop_one_metadata_entry,
        "its list of arrays, default/_METADATA, differs from the run's other steps",
    ),
    "missing_item": (
        lambda d: shutil.rmtree(d / "default"),
        "its data folder, default/, is missing",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_latest_checkpoint_is_moved_aside_and_the_run_resumes(
    setup, tmp_path, damage, capsys
):
    """In process, through the call train.py makes (`train_and_evaluate` with the config
    `command` gives it): what happens on a damaged checkpoint is the library's; train.py
    as a process, killed and resumed, is the kill -9 and SIGTERM tests'."""
    data, reference = setup
    stopped_at(data, 4, tmp_path)
    damage_it, words = DAMAGE[damage]
    damage_it(tmp_path / "checkpoints" / "4")
    capsys.readouterr()
    train_lib.train_and_evaluate(config_of(data), str(tmp_path))
    out, err = capsys.readouterr()
    note = next(line for line in out.splitlines() if line.startswith("start: "))
    assert f"checkpoint step 4 is unreadable ({words})" in note
    assert (out + err).count("is unreadable") == 1  # said once
    assert f"moved to {tmp_path}/checkpoints_damaged/4" in note
    assert f"resumed from {tmp_path}/checkpoints/2" in note
    assert (tmp_path / "checkpoints_damaged" / "4").is_dir()  # kept, not deleted
    assert_same_as_uninterrupted(tmp_path, reference, data)


def test_no_readable_checkpoint_never_means_starting_over(setup, tmp_path):
    data, _ = setup
    stopped_at(data, 2, tmp_path)
    steps = [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert steps  # orbax also keeps the first step
    for step in steps:
        shutil.rmtree(step / "default")
    # in process (the error's one line is test_config_errors.py's, for every UserError)
    with pytest.raises(UserError) as caught:
        train_lib.train_and_evaluate(config_of(data), str(tmp_path))
    assert str(caught.value).startswith("no checkpoint in "), caught.value
    assert "nothing was moved" in str(caught.value)
    assert all(step.is_dir() for step in steps)


def _mount_tmpfs(path, size):
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def _fill(folder, leave):
    """Writes a ballast file into `folder` until only `leave` bytes are free there."""
    free = shutil.disk_usage(folder).free - leave
    with open(folder / "ballast", "wb") as f:
        while free > 0:
            chunk = min(free, 1 << 20)
            f.write(b"\0" * chunk)
            free -= chunk


def test_full_disk_stops_at_the_first_failed_save(setup, tmp_path):
    """A workdir on a small tmpfs holding the uninterrupted run's step-2 checkpoint, filled
    with a ballast file to 256 KiB short of full: room for the logs, never for a
    checkpoint (the state alone is ~2 MB; orbax's files for one step measured 2.3 to over
    6 MB, depending on how its writes were batched, so the room is not sized by them). The
    run resumes from step 2; its first save (step 4) fails. Orbax logs its own write
    errors above; the last line is reidjax's."""
    data, reference = setup
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "16m"):
        pytest.skip("cannot mount a tmpfs here; test_failed_save_is_one_line covers the path")
    try:

        def leave_out(folder, names):  # the lock, the event files, checkpoints after 2
            later = os.path.basename(folder) == "checkpoints"
            return [n for n in names if n in (".lock", "tensorboard") or (later and n != "2")]

        shutil.copytree(data.parent / "whole", small, dirs_exist_ok=True, ignore=leave_out)
        _fill(small, leave=256 * 1024)
        full = train(small, data, "--config.train.checkpoint_every=2")
        assert full.returncode == 1, full.stderr[-3000:]
        assert f"resumed from {small}/checkpoints/2" in full.stdout
        message = last_line(full.stderr)
        assert message.startswith("error: saving checkpoint step 4 to "), message
        assert "(No space left on device; " in message and "MiB free there" in message
        assert "the last complete checkpoint is step 2: free some space" in message, message
        # reported by the next save at the latest (step 6's, not written), not trained on
        assert "trained to step" not in full.stdout
        assert [p.name for p in (small / "checkpoints").iterdir() if p.name.isdigit()] == ["2"]
        moved = tmp_path / "moved"
        shutil.copytree(small, moved, ignore=shutil.ignore_patterns(".lock", "ballast"))
    finally:
        subprocess.run(["umount", str(small)], check=False)
    again = train(moved, data)  # the documented recovery: more space (here: another disk)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {moved}/checkpoints/2" in again.stdout
    assert_same_as_uninterrupted(moved, reference, data)


def test_failed_save_is_one_line(monkeypatch, tmp_path):
    """The disk-full path without a tmpfs: the checkpoint writer raises ENOSPC."""
    from reidjax.training import checkpoint

    ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), save_every=1)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.manager, "save", no_space)
    with pytest.raises(checkpoint.CheckpointSaveError) as info:
        ckpt.save(1, {"x": np.zeros(3)})
    message = str(info.value)
    assert "saving checkpoint step 1" in message and "No space left on device" in message
    assert "MiB free there" in message and "the last complete checkpoint is none" in message
    assert "free some space" in message

    def no_permission(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ckpt.manager, "save", no_permission)
    with pytest.raises(checkpoint.CheckpointSaveError) as info:
        ckpt.save(2, {"x": np.zeros(3)})
    message = str(info.value)
    assert "(PermissionError: [Errno 13] Permission denied; " in message, message
    assert "give this user write access" in message and "free some space" not in message
    ckpt.close()


def test_second_trainer_on_a_workdir_is_refused(setup, tmp_path):
    data, reference = setup
    # a live holder (this test process) is named in one line
    lock = runlock.WorkdirLock(str(tmp_path))
    lock.acquire()
    try:
        refused = train(tmp_path, data)
    finally:
        lock.release()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    message = last_line(refused.stderr)
    assert message.startswith(f"error: {tmp_path} is in use by another trainer (pid ")
    assert f"pid {os.getpid()} on" in message
    # two trainers started together: one trains, the other is refused, nothing is damaged
    both = [start(tmp_path / "both", data, steps=STEPS) for _ in range(2)]
    try:
        results = [(p.communicate(timeout=300), p.returncode) for p in both]
    finally:
        for p in both:
            p.kill()
    codes = sorted(code for _, code in results)
    assert codes == [0, 1], [err[-2000:] for (_, err), _ in results]
    (_, err), _ = next(r for r in results if r[1] == 1)
    assert "is in use by another trainer" in last_line(err)
    assert_same_as_uninterrupted(tmp_path / "both", reference, data)


def test_resume_with_another_model_is_one_line(setup, tmp_path):
    data, _ = setup
    stopped_at(data, 2, tmp_path)
    saved = (tmp_path / "config.json").read_text()
    other = config_of(data)
    with other.unlocked():
        other.model.dsanet.loss_w = False
    with pytest.raises(ConfigError) as caught:  # the run's record names the changed key
        train_lib.train_and_evaluate(other, str(tmp_path))
    assert "model.dsanet.loss_w True -> False" in str(caught.value), caught.value
    assert (tmp_path / "config.json").read_text() == saved
    (tmp_path / "config.json").unlink()  # without the record, the checkpoint itself tells
    with pytest.raises(UserError) as caught:
        train_lib.train_and_evaluate(other, str(tmp_path))
    message = str(caught.value)
    assert "was written by a different model" in message and "unexpected fwg_classifier/" in message
    assert "\n" not in message  # one line
    assert not (tmp_path / "config.json").exists()  # nothing recorded for a run that did not start
    assert (tmp_path / "checkpoints" / "2").is_dir()  # nothing moved: it is not damaged


def test_divergence_stops_before_saving_a_non_finite_state(setup, tmp_path):
    data, _ = setup
    config = config_of(data, **{"optim.lr": 1e30, "train.checkpoint_every": 1})
    with pytest.raises(TrainingDivergedError) as caught:
        train_lib.train_and_evaluate(config, str(tmp_path))
    message = str(caught.value)
    assert message.startswith("step ") and "not finite" in message and "\n" not in message
    # Every kept checkpoint is finite but already blown up (Adam at lr 1e30 moved each
    # parameter by ~1e30 in one step): none is offered to go on from.
    assert "No kept checkpoint predates the blow-up" in message, message
    bad_step = int(message.split("step ")[1].split(":")[0])
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert all(s < bad_step for s in saved)
    if saved:
        _, last = variables(tmp_path, data)
        assert all(np.all(np.isfinite(v)) for v in last.values())


def test_the_checkpoint_to_go_on_from_after_a_divergence_is_judged_by_its_norm():
    """Hand-computed: the newest step whose parameter norm is finite and within 10x of the
    start's."""
    from reidjax.training.divergence import newest_sound

    start = 50.0
    assert newest_sound({10: 51.0, 20: 60.0, 30: 4e3, 40: 1e33}, start) == 20
    assert newest_sound({10: 499.0, 20: 501.0}, start) == 10  # the limit is 10 x 50 = 500
    assert newest_sound({10: float("nan"), 20: float("inf")}, start) is None
    assert newest_sound({10: 1e30}, start) is None
    assert newest_sound({}, start) is None


@pytest.mark.slow
def test_sigterm_during_an_evaluation_stops_it_within_a_batch(tmp_path, monkeypatch):
    """A notice during the periodic evaluation (here: sent as its first batch is read)
    ends it after that batch; the step is saved and the run ends with `Preempted`. The
    same during the final evaluation; the rerun then writes the final report it lacks."""
    workdir = tmp_path / "run"
    config = smoke_config(
        "synthetic", tmp_path / "data", **{"train.num_steps": 4, "train.eval_every": 2,
                                            "eval.batch_size": 2, "mesh.data": 1}
    )  # fmt: skip
    real, read = features.to_device, []

    def signalled(*args, **kwargs):
        for batch in real(*args, **kwargs):
            read.append(batch)
            if len(read) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    monkeypatch.setattr(features, "to_device", signalled)
    for stop in (2, 4):  # the periodic evaluation, then the final one
        read.clear()
        with pytest.raises(train_lib.Preempted) as preempted:
            train_lib.train_and_evaluate(config, str(workdir))
        assert preempted.value.step == stop and len(read) == 1
        assert (workdir / "checkpoints" / str(stop)).is_dir()
        assert not (workdir / "eval" / "results.json").exists()
    monkeypatch.setattr(features, "to_device", real)
    state = train_lib.train_and_evaluate(config, str(workdir))
    assert int(state.step) == 4
    assert json.loads((workdir / "eval" / "results.json").read_text())["step"] == 4
