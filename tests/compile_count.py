"""A pytest plugin that counts what a test run compiles (`-p tests.compile_count`).

Run with a fresh, empty persistent compilation cache (and a low
`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`): then a persistent-cache *hit* inside one
process is a program this process already compiled, asked for again because its in-memory
jit cache missed it (a new `jax.jit` wrapper per call, a changed static argument that
lowers to the same module, an eager op on a fresh closure). Each such hit is a compile the
tests could have shared. At the end of the session the counts and the names of the
programs asked for twice go, as JSON, to `$REIDJAX_COMPILE_COUNT_OUT`.
"""

from __future__ import annotations

import json
import logging
import os

import jax

_COUNTS = {"requests": 0, "compiles": 0, "repeats": 0}
_REPEATED: list[str] = []


def _on_event(event: str, **_) -> None:
    if event == "/jax/compilation_cache/compile_requests_use_cache":
        _COUNTS["requests"] += 1
    elif event == "/jax/compilation_cache/cache_hits":
        _COUNTS["repeats"] += 1


def _on_duration(event: str, duration: float, **_) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _COUNTS["compiles"] += 1


class _HitNames(logging.Handler):
    """JAX logs each persistent-cache hit with the module's name (at DEBUG)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Persistent compilation cache hit for "):
            _REPEATED.append(message.split("'")[1] if "'" in message else message)


def pytest_configure(config):
    jax.monitoring.register_event_listener(_on_event)
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    logger = logging.getLogger("jax._src.compiler")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_HitNames(logging.DEBUG))


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("REIDJAX_COMPILE_COUNT_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({**_COUNTS, "repeated": sorted(_REPEATED)}, f)
