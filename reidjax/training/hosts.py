"""Several processes as one run: start-up, one stop that every process agrees on, a lost
process noticed by the others, and processes that meet before their first step.

On one process everything here is a no-op except SIGTERM: the flag of
`reidjax.training.preemption`, read during start-up (`preemption.check`) and by the training loop
once per step (`StopRequests`).

With several processes (`initialize()`: `jax.distributed`):

- **Stopping is collective.** JAX's preemption service owns SIGTERM: a notice reaching any
  process is shared with all of them, and `StopRequests.requested` becomes true on every
  process at the same step (`multihost_utils.reached_preemption_sync_point`), so that all
  save that step and exit 75 together, however far apart the notices arrived.
- **A lost process ends the run.** Each process writes a beat to the coordination
  service's key-value store every second and watches the others' (`PeerWatch`). A process
  that stops beating for `REIDJAX_PEER_TIMEOUT` seconds (60 by default; killed, host lost,
  hung) or that reports an error (`abort`) makes every other process print one line and
  exit 1; a process preempted during start-up (`STOPPED`) makes the others exit 75 with
  it. JAX's own heartbeat timeout is set above it, so the line comes first. When
  process 0 is lost, the coordination service goes with it and JAX ends the others at once
  with its own message ("the JAX distributed service detected fatal errors").
- **Processes meet after compiling** (`barrier`), so that a fast process (a warm
  compilation cache) does not time out a slow one in the first collective's set-up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time

import jax
from jax.experimental import multihost_utils

from reidjax.errors import UserError
from reidjax.training import preemption

# Seconds without a beat after which a process counts as lost (REIDJAX_PEER_TIMEOUT).
PEER_TIMEOUT_S = 60.0
# How long a process waits for the others at a barrier (a slow compile, a slow restore).
BARRIER_TIMEOUT_S = 3600
_BEAT_S = 1.0
_KEY = "reidjax/alive/"
# Exit status of a preempted run (EX_TEMPFAIL, "try again later"; train.py's too).
PREEMPTED = 75
DONE, FAILED, STOPPED = "done", "failed", "stopped"


def peer_timeout() -> float:
    """`REIDJAX_PEER_TIMEOUT` (seconds) or the default."""
    value = os.environ.get("REIDJAX_PEER_TIMEOUT", "")
    try:
        timeout = float(value) if value else PEER_TIMEOUT_S
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise UserError(f"REIDJAX_PEER_TIMEOUT={value!r}: give a number of seconds > 0")
    return timeout


def initialize() -> None:
    """`jax.distributed.initialize()` for multi-process runs, then the watch over the other
    processes; a no-op on one process.

    Driven by the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID, or a cluster JAX detects itself (a Cloud TPU slice) with
    REIDJAX_DISTRIBUTED=1; REIDJAX_PEER_TIMEOUT as in the module docstring.
    """
    if jax.distributed.is_initialized():
        return
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = dict(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get("REIDJAX_DISTRIBUTED") == "1":
        kwargs = {}
    else:
        return
    timeout = peer_timeout()
    jax.distributed.initialize(heartbeat_timeout_seconds=max(100, int(2 * timeout)), **kwargs)
    if jax.process_count() > 1:
        PeerWatch.start(timeout)


def _client():
    from jax._src import distributed  # the coordination service's client; no public name

    return distributed.global_state.client


class PeerWatch:
    """The beats of this process and the watch over the others' (module docstring)."""

    _thread: threading.Thread | None = None
    _stop = threading.Event()

    @classmethod
    def start(cls, timeout: float) -> None:
        if cls._thread is not None:
            return
        cls._thread = threading.Thread(
            target=cls._run, args=(_client(), jax.process_index(), jax.process_count(), timeout),
            name="reidjax-peer-watch", daemon=True,
        )  # fmt: skip
        cls._thread.start()
        atexit.register(cls.finish)  # before jax.distributed's own shutdown (LIFO)

    @classmethod
    def finish(cls, status: str = DONE) -> None:
        """Stops beating and tells the others this process ended (`done`: the others may
        go on without it; `failed`: they stop too, exit 1; `stopped`: preempted before
        the first step, they stop too, exit 75)."""
        if cls._thread is None or cls._stop.is_set():
            return
        cls._stop.set()
        cls._thread.join(timeout=5)
        with contextlib.suppress(Exception):  # the coordinator is gone: nothing to tell
            _client().key_value_set(f"{_KEY}{jax.process_index()}", status, allow_overwrite=True)
            if status != DONE and jax.process_index() == 0:
                # Process 0 holds the coordination service: the others read the status
                # from it at their next beat, before it goes away with this process.
                time.sleep(3 * _BEAT_S)

    @classmethod
    def _run(cls, client, me: int, count: int, timeout: float) -> None:
        peers = [p for p in range(count) if p != me]
        seen: dict[int, str] = {}
        last = {p: time.monotonic() for p in peers}
        beat = 0
        while not cls._stop.wait(_BEAT_S):
            beat += 1
            try:
                client.key_value_set(f"{_KEY}{me}", str(beat), allow_overwrite=True)
                values = {k.rsplit("/", 1)[-1]: v for k, v in client.key_value_dir_get(_KEY)}
            except Exception as e:
                if cls._stop.is_set():
                    return
                _die(
                    f"lost the coordination service (process 0) while process {me} of {count} "
                    f"was running ({first_line(e)}): process 0 is gone or unreachable"
                )
            now = time.monotonic()
            for p in peers:
                value = values.get(str(p))
                if value == FAILED:
                    _die(f"process {p} of {count} stopped with an error (its output says why)")
                if value == STOPPED:
                    _die(
                        f"preempted during start-up: process {p} of {count} got the notice "
                        "before any step; nothing new to save. Rerun the same command on every "
                        "host to resume",
                        status=PREEMPTED,
                    )
                if value != seen.get(p):
                    seen[p], last[p] = value, now
            lost = [p for p in peers if seen.get(p) != DONE and now - last[p] > timeout]
            if lost:
                names = ", ".join(map(str, lost))
                _die(
                    f"process {names} of {count} gave no sign of life for {timeout:.0f} s "
                    "(killed, its host lost, or hung)"
                )


def several_processes() -> bool:
    """Whether this is one process of a multi-process run (initialized)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def process_index() -> int:
    return jax.process_index()


def peer_gone(e: BaseException) -> bool:
    """Whether `e` is a collective that failed because another process went away (a
    closed connection: killed, or its host lost)."""
    text = str(e)
    return isinstance(e, jax.errors.JaxRuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset", "Socket closed")
    )


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _die(reason: str, status: int = 1) -> None:
    """One line, then exit at once (1, or `status` with `reason` as the whole line): waiting
    would only hang in the next collective."""
    PeerWatch._stop.set()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    if status == 1:
        reason = (
            f"error: {reason}; stopping process {jax.process_index()} too. Rerun the same "
            "command on every host to resume from the last checkpoint"
        )
    os.write(2, f"\n{reason}\n".encode())
    os._exit(status)


def abort(status: int, tell: str = FAILED) -> None:
    """Ends this process of a multi-process run with `status` after it has reported why:
    tells the others (`FAILED`: they stop with one line and exit 1; `STOPPED`: preempted
    before any step, they exit 75 too) and exits at once, since JAX's orderly shutdown
    would wait for processes that are still running. A no-op on one process."""
    if not several_processes():
        return
    PeerWatch.finish(tell)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def barrier(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Every process waits here until all have arrived (a no-op on one process).

    Raises:
        UserError: the others did not all arrive within `timeout_s`.
    """
    if jax.process_count() <= 1:
        return
    try:
        _client().wait_at_barrier(f"reidjax/{name}", int(timeout_s * 1000))
    except Exception as e:
        raise UserError(
            f"process {jax.process_index()} waited {timeout_s:.0f} s for the other processes "
            f"at '{name}' and not all came ({first_line(e)})"
        ) from None


class StopRequests:
    """SIGTERM as a request to stop, read by the training loop once per step.

    One process: the flag of `reidjax.training.preemption` (a notice during start-up counts too).
    Its handler is installed for the loop's lifetime if it was not already (train.py
    installs it first thing); then the previous handler comes back on exit and the notice
    is forgotten, since `Preempted` has reported it. Several processes: JAX's preemption
    service (which owns SIGTERM once `jax.distributed` is initialized) decides a step every
    process stops at. `requested(step)` must be called at every step, on every process.
    """

    def __init__(self):
        self.collective = jax.process_count() > 1
        self.previous = None
        self.installed_here = False

    def __enter__(self) -> StopRequests:
        if not self.collective and not preemption.installed():
            self.previous = signal.getsignal(signal.SIGTERM)
            preemption.install()
            self.installed_here = True
        return self

    def __exit__(self, *exc) -> None:
        if self.installed_here:
            signal.signal(signal.SIGTERM, self.previous)
            preemption.clear()

    def requested(self, step: int) -> bool:
        """Whether to stop after global step `step`, just taken (the same answer on every
        process)."""
        if self.collective:
            # The global step, as orbax's CheckpointManager passes it to the same counter:
            # the service's stop step is one past the highest step any caller reported, so
            # a count of this process's own calls would lag it by the step a run resumed
            # from, and the stop would come that many steps late.
            return multihost_utils.reached_preemption_sync_point(step)
        return preemption.requested()
