"""Two processes of one `jax.distributed` run of `train.py` on this machine (2 CPU devices
each, gloo collectives on 127.0.0.1), as docs/training.md's recipe; and their
uninterrupted run, made once per test run and shared: tests/test_hosts.py resumes
interrupted chains to it bitwise, tests/test_train.py compares its first step with one
process's."""

import pathlib
import subprocess
import sys
import time

from tests.runs import free_port, two_process_env
from tests.shared import once

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What every run here changes in configs/synthetic.py:smoke. The C2D baseline instead of
# DSANet: these runs test the processes' coordination (signals, barriers, checkpoints, a
# lost peer), not a model, and process 1 compiles cold in every start (JAX's CPU cache key
# differs between the processes, and only process 0 writes), so a cheaper program saves
# that compilation six times. SGD at lr 0.1: its first step is what tests/test_train.py
# compares across layouts (`CROSS_LAYOUT_ATOL` is derived for it; Adam's first step would
# amplify rounding), and the interrupted chains must resume to the same optimizer.
RUN = {"model.name": "baseline", "optim.name": "sgd", "optim.lr": 0.1}
SETTINGS = [f"--config.{key}={value}" for key, value in RUN.items()]
STEPS = (
    14  # long enough that the second stop (by step 11) and the kill after it land before the end
)
# A stop comes at most this many steps after the last step process 0 printed before the
# signal: that process may have taken one more step when the signal lands, and the stop
# step is one past the highest step any process has reported to JAX's preemption service;
# one more for the notice's trip through the coordination service while a step runs.
STOP_LAG = 3
# Seconds (REIDJAX_PEER_TIMEOUT): a lost process is noticed after this. 10 s once stopped a
# healthy run on a 2-core machine overloaded by other trainings (one beat per second, none
# seen for 10 s); 20 s keeps the faults below (SIGKILL, 40 s SIGSTOP) well past it.
PEER_TIMEOUT = 20
# Every process must have exited this long after the fault: the peer timeout, one step,
# a checkpoint save and the interpreter's exit, with a wide margin for a loaded 2-core
# machine (measured: under 20 s).
EXIT_BOUND = 90


class TwoProcesses:
    """`train.py` on two processes of one jax.distributed run."""

    def __init__(
        self, tmp_path, workdir, *extra, data=None, peer_timeout=PEER_TIMEOUT, env_of=None
    ):
        data = data or tmp_path / "data"
        port = free_port()
        self.procs, self.logs, self.stdout = [], [], {}
        for rank in (0, 1):
            env = two_process_env(
                port, rank, REIDJAX_PEER_TIMEOUT=str(peer_timeout), **(env_of or {}).get(rank, {})
            )
            args = [
                sys.executable, "train.py", "--config", "configs/synthetic.py:smoke",
                "--workdir", str(workdir), f"--config.dataset.data_dir={data}",
                f"--config.train.num_steps={STEPS}", "--config.train.eval_every=-1",
                "--config.train.log_every=1", *SETTINGS, *extra,
            ]  # fmt: skip
            err = open(tmp_path / f"{workdir.name}.{rank}.{time.monotonic_ns()}.err", "w+")  # noqa: SIM115
            self.logs.append((rank, err))
            self.procs.append(
                (rank, subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                        text=True, env=env))
            )  # fmt: skip

    def wait_for(self, start: str) -> None:
        """Until process 0 printed a line starting with `start` (process 0 prints the
        start-up report and the progress lines)."""
        for line in self.procs[0][1].stdout:
            if line.startswith(start):
                return
        raise AssertionError(f"process 0 ended before {start!r}: {self.stderr(0)[-2000:]}")

    def wait_for_step(self, step: int) -> None:
        self.wait_for(f"step {step}/")

    def signal(self, rank: int, sig: int) -> float:
        self.procs[rank][1].send_signal(sig)
        return time.monotonic()

    def wait(self, since: float | None = None) -> list[int]:
        """Exit statuses; every process must end within EXIT_BOUND of `since`."""
        since = time.monotonic() if since is None else since
        try:
            for rank, p in self.procs:
                out, _ = p.communicate(timeout=max(1.0, since + EXIT_BOUND - time.monotonic()))
                self.stdout[rank] = out or ""
        finally:
            for _, p in self.procs:
                p.kill()
        return [p.returncode for _, p in self.procs]

    def stderr(self, rank: int) -> str:
        err = self.logs[rank][1]
        err.flush()
        err.seek(0)
        return err.read()

    def last_line(self, rank: int) -> str:
        """The last line of stderr, which must be the only one that tells the user what
        happened (no traceback, no JAX fatal log)."""
        text = self.stderr(rank)
        assert "Traceback" not in text and "Check failure" not in text, text[-3000:]
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines, f"process {rank} said nothing"
        return lines[-1]


def uninterrupted_run(tmp_path_factory) -> pathlib.Path:
    """The two-process run of STEPS steps, uninterrupted, made once per test run: its
    folder holds `data/`, the workdir `whole/` (a checkpoint at every step) and each
    process's output, `whole.out0` and `whole.out1`."""

    def make(folder: pathlib.Path) -> None:
        folder.mkdir()
        run = TwoProcesses(
            folder, folder / "whole", "--config.train.checkpoint_every=1",
            f"--config.train.keep_checkpoints={STEPS}",
        )  # fmt: skip
        statuses = run.wait(time.monotonic() + 600)
        assert statuses == [0, 0], run.stderr(0)[-3000:] + run.stderr(1)[-3000:]
        for rank in (0, 1):
            (folder / f"whole.out{rank}").write_text(run.stdout[rank])

    return once(tmp_path_factory, "two_processes", make)
