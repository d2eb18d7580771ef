"""SIGTERM as a flag: a preemption notice is recorded, never raised.

train.py installs the handler before it imports anything heavy (`install`), so a notice at
any moment from its first line on is kept. The handler only sets a flag: an exception
raised from a signal handler surfaces at whatever line happens to run, where JAX's backend
set-up, its compilation-cache read or a garbage-collection callback may catch or rewrap it.
The flag is read at defined points instead:

- during start-up (`check`): after the config is read, after the data and model are set
  up, after the checkpoint is restored, before and after the train step compiles. A notice
  there ends the run with `StoppedAtStartup` (nothing new to save; exit 75);
- in the training loop, once per step (`hosts.StopRequests`): the step reached is saved,
  then `Preempted` (exit 75);
- in the periodic evaluation of a one-process run, once per batch
  (`features.FeatureExtractor.should_stop`): `EvaluationStopped`, then the step is saved
  and `Preempted`. With several processes the notice is JAX's, read at the next step.

This module imports nothing but the standard library.
"""

from __future__ import annotations

import signal

_notice = {"received": False}


class StoppedAtStartup(Exception):
    """SIGTERM arrived before the first step; nothing new to save."""

    def __init__(self, stage: str):
        super().__init__(
            f"preempted during start-up ({stage}), before any step: nothing new to save; "
            "run the same command to resume"
        )


class EvaluationStopped(Exception):
    """A notice arrived during an evaluation, which stopped after its current batch."""


def _on_sigterm(signum, frame) -> None:
    _notice["received"] = True


def install() -> None:
    """Makes SIGTERM set the flag from now on (for the whole process)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def installed() -> bool:
    """Whether SIGTERM sets the flag now."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def requested() -> bool:
    """Whether a SIGTERM has arrived since `install` (or the last `clear`)."""
    return _notice["received"]


def clear() -> None:
    """Forgets a notice (for a caller that handled it and goes on in the same process)."""
    _notice["received"] = False


def check(stage: str) -> None:
    """Raises `StoppedAtStartup` naming `stage` ("after the checkpoint restore") if a
    SIGTERM has arrived.

    Raises:
        StoppedAtStartup: a notice is pending.
    """
    if _notice["received"]:
        raise StoppedAtStartup(stage)
