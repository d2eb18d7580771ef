"""Faults of a multi-process run: one process preempted, one killed, processes starting
apart; SIGTERM during start-up. Real `jax.distributed` runs of train.py on this machine
(two processes, 2 CPU devices each, gloo collectives on 127.0.0.1), as docs/training.md's
recipe, and each interrupted chain resumed to the end must equal the uninterrupted
two-process run bitwise (same program, same devices, same gloo reduction order)."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from reidjax.errors import UserError
from reidjax.training import hosts, preemption, train_lib
from tests.runs import (
    assert_bitwise_equal,
    synthetic_config,
    variables_of,
)
from tests.two_processes import (
    RUN,
    STEPS,
    STOP_LAG,
    TwoProcesses,
    uninterrupted_run,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def stopped_step(line: str) -> int:
    assert line.startswith("preempted: saved step "), line
    return int(line.split("preempted: saved step ")[1].split(";")[0])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The shared uninterrupted two-process run (`tests.two_processes.uninterrupted_run`):
    its data dir and (step, variables)."""
    root = uninterrupted_run(tmp_path_factory)
    return root / "data", variables_of(root / "whole", synthetic_config(root, **RUN))


def resume_to_the_end(tmp_path, workdir, expected, *extra, data, run=None):
    run = run or TwoProcesses(tmp_path, workdir, *extra, data=data)
    assert run.wait(time.monotonic() + 600) == [0, 0], run.stderr(0)[-3000:] + run.stderr(1)
    step, got = variables_of(workdir, synthetic_config(tmp_path, **RUN))
    assert step == STEPS == expected[0]
    assert_bitwise_equal(expected[1], got)


@pytest.mark.slow
def test_preempted_twice_then_killed_then_skewed_start_resumes_bitwise(uninterrupted, tmp_path):
    """One chain of interrupted runs of one workdir, each resumed where the last stopped.

    1. No checkpoint due (checkpoints every 1000 steps): SIGTERM to process 1 only. Both
       processes stop at the same step, within STOP_LAG steps of the signal, save it (not
       only the signalled one), exit 75 with one line each.
    2. Resumed from that step (not 0), checkpoints at every step: SIGTERM to process 0
       only; the same, on time in the resumed run too (the stop step is counted in global
       steps).
    3. kill -9 of process 1: process 0 says in one line that its peer is gone and exits 1
       within the bound (freeing the workdir lock: the next run takes it).
    4. A resume in which process 1 reaches its first step 40 s after process 0 (a cold
       compilation cache where process 0's is warm, and the process paused for 40 s while
       compiling), past the 30 s in which the first collective's set-up times out: the
       barrier after compiling holds process 0, and the run trains to the end, equal to
       the uninterrupted run bitwise."""
    data, expected = uninterrupted
    workdir = tmp_path / "chain"
    rare, every = "--config.train.checkpoint_every=1000", "--config.train.checkpoint_every=1"
    stops = []
    for victim, after, cadence in ((1, 3, rare), (0, 2, every)):
        run = TwoProcesses(tmp_path, workdir, cadence, data=data)
        seen = stops[-1] + after if stops else after
        run.wait_for_step(seen)
        since = run.signal(victim, signal.SIGTERM)
        assert run.wait(since) == [75, 75], run.stderr(0)[-3000:] + run.stderr(1)[-3000:]
        steps = {stopped_step(run.last_line(rank)) for rank in (0, 1)}
        assert len(steps) == 1, steps  # the same step on both processes
        stops.append(steps.pop())
        assert seen < stops[-1] <= seen + STOP_LAG, (seen, stops)
        assert (workdir / "checkpoints" / str(stops[-1])).is_dir()
    assert stops[0] % 1000  # saved although no checkpoint was due
    assert 3 <= stops[0] < stops[1] < STEPS - 1

    run = TwoProcesses(tmp_path, workdir, rare, data=data)
    run.wait_for_step(stops[1] + 1)
    since = run.signal(1, signal.SIGKILL)
    statuses = run.wait(since)
    assert statuses[1] == -signal.SIGKILL
    assert statuses[0] == 1, run.stderr(0)[-3000:]
    line = run.last_line(0)
    # Whichever notices first: the collective with the dead process fails (a closed
    # connection), or the watch finds no beat for PEER_TIMEOUT seconds.
    assert line.startswith("error: "), line
    assert "another process went away" in line or "process 1 of 2 gave no sign" in line, line
    assert "rerun the same command" in line.lower(), line

    cold = {1: {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cold_cache")}}
    run = TwoProcesses(tmp_path, workdir, rare, data=data, peer_timeout=80, env_of=cold)
    run.wait_for("compiling the train step")
    run.signal(1, signal.SIGSTOP)
    time.sleep(40)
    run.signal(1, signal.SIGCONT)
    resume_to_the_end(tmp_path, workdir, expected, data=data, run=run)


def test_peer_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("REIDJAX_PEER_TIMEOUT", "12.5")
    assert hosts.peer_timeout() == 12.5
    monkeypatch.delenv("REIDJAX_PEER_TIMEOUT")
    assert hosts.peer_timeout() == hosts.PEER_TIMEOUT_S
    for bad in ("0", "-3", "soon"):
        monkeypatch.setenv("REIDJAX_PEER_TIMEOUT", bad)
        with pytest.raises(UserError, match="REIDJAX_PEER_TIMEOUT"):
            hosts.peer_timeout()


def test_one_process_needs_no_coordination():
    """On one process the barrier is a no-op and a stop is this process's own SIGTERM,
    recorded by a handler that the loop installs for its lifetime where train.py's is not
    in place; the notice goes with it."""
    hosts.barrier("anything", timeout_s=0.001)
    before = signal.getsignal(signal.SIGTERM)
    with hosts.StopRequests() as stops:
        assert not stops.requested(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stops.requested(2)
        with pytest.raises(preemption.StoppedAtStartup, match=r"\(after x\), before any step"):
            preemption.check("after x")
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert not preemption.requested()
    preemption.check("after y")  # nothing pending


def test_a_notice_before_the_loop_stops_the_run_before_anything_is_written():
    """A notice that came while a run set up (train.py's handler in place) ends it at the
    first check point; the loop does not put its own handler over train.py's."""
    previous = signal.getsignal(signal.SIGTERM)
    preemption.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(preemption.StoppedAtStartup, match="after the data and model"):
            train_lib.train(None, None)  # stops before it reads the run
        with hosts.StopRequests() as stops:
            assert stops.requested(1) and not stops.installed_here
        assert preemption.requested()  # train.py's notice stays until the process ends
    finally:
        preemption.clear()
        signal.signal(signal.SIGTERM, previous)


def _handler_installed(pid: int) -> bool:
    """Whether process `pid` catches SIGTERM now (its SigCgt mask in /proc)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _stdout_until(process: subprocess.Popen, marker: bytes) -> None:
    """Reads the process's output until `marker` (a line may not have ended yet)."""
    seen = b""
    while marker not in seen:
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError(f"ended before {marker!r}: {process.stderr.read()[-2000:]}")
        seen += chunk


# When the notice arrives: as soon as train.py's handler is installed (its first lines,
# before the imports), while the data and model set up (after "workdir: "), while the train
# step compiles. Each is read at the next check point, whatever code ran when it came.
START_UP_MOMENTS = {
    "imports": (None, "after the config was read"),
    "set-up": (b"workdir: ", "after the "),
    "compile": (b"compiling the train step...", "after the compile"),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", START_UP_MOMENTS)
def test_sigterm_at_any_moment_of_start_up_exits_75_with_one_line(tmp_path, moment, dsanet_run):
    """A stop before the first step, at several moments: status 75 (the documented
    preempted status, not 143), one line naming where it was read, and no checkpoint."""
    marker, stage = START_UP_MOMENTS[moment]
    workdir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "train.py", "--config", "configs/synthetic.py:smoke",
         "--workdir", str(workdir), "--config.mesh.data=1",
         f"--config.dataset.data_dir={dsanet_run.config.dataset.data_dir}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        if marker is None:
            deadline = time.monotonic() + 60
            while not _handler_installed(process.pid):
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.001)
        else:
            _stdout_until(process, marker)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=180)
    finally:
        process.kill()
    err = err.decode()
    assert process.returncode == hosts.PREEMPTED, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    if moment == "compile" and last.startswith("preempted: saved step 1;"):
        # A compile from a warm cache can end before the signal is delivered: then the
        # notice is the first step's, and that step is saved.
        assert [p.name for p in workdir.glob("checkpoints/*")] == ["1"], err[-2000:]
        return
    assert last.startswith(f"preempted during start-up ({stage}"), err[-2000:]
    assert not list(workdir.glob("checkpoints/*"))


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_sigterm_to_one_process_during_start_up_stops_both_with_75(uninterrupted, tmp_path, victim):
    """A notice to one process as soon as its handler is in place (during its imports):
    it meets the other, says it was preempted before any step, and the other stops too
    (exit 75 on both, one line each) instead of waiting for a peer that will not come."""
    data, _ = uninterrupted
    workdir = tmp_path / "run"
    run = TwoProcesses(tmp_path, workdir, data=data)
    pid = run.procs[victim][1].pid
    deadline = time.monotonic() + 60
    while not _handler_installed(pid):
        assert run.procs[victim][1].poll() is None and time.monotonic() < deadline
        time.sleep(0.001)
    since = run.signal(victim, signal.SIGTERM)
    assert run.wait(since) == [75, 75], run.stderr(0)[-3000:] + run.stderr(1)[-3000:]
    assert run.last_line(victim).startswith("preempted during start-up (after the config")
    other = run.last_line(1 - victim)
    assert other.startswith(f"preempted during start-up: process {victim} of 2 got"), other
    assert not list(workdir.glob("checkpoints/*"))


def test_worker_processes_that_reimport_train_py_keep_the_default_sigterm():
    """The dataset builders' spawned workers import train.py again (as __mp_main__); their
    pool ends them with SIGTERM, which must still end them (a flag would hang the build)."""
    code = (
        "import runpy, signal; runpy.run_path('train.py', run_name='__mp_main__'); "
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "True", out.stderr[-2000:]
