"""Shared pieces of the benchmark scripts: the machine header and a timing loop."""

import os
import platform
import time

FULL_SIZE = (256, 128)
# --tiny: the frames of the smoke configs, so that the suite runs every bench in seconds
# (tests/test_bench.py); its figures mean nothing.
TINY_SIZE = (32, 64)


def frame_size(tiny: bool) -> tuple[int, int]:
    return TINY_SIZE if tiny else FULL_SIZE


def header(bench: str, **fields) -> dict:
    """The first fields of a benchmark's JSON line: what ran, where, with which JAX."""
    import jax

    return {
        "bench": bench,
        **fields,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }


def time_eager(step, warmup: int, steps: int):
    """Seconds per call of `step()` (eager code that finishes before returning) over
    `steps` calls after `warmup` untimed ones; returns (seconds, last result)."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step()
    return (time.perf_counter() - t0) / steps, out
