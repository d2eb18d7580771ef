"""The XLA flags of every process of a test run: pytest's workers and the processes the
tests start (train.py, the two-process runs, the benches).

The suite compiles a few hundred small CPU programs and runs each a few times, so most of
its time is spent in the compiler, and most of that in LLVM. At optimisation level 1
instead of the default, a module of model tests (tests/test_strf.py, test_remat.py,
test_dsanet.py, two trainings of test_train.py, test_smoke_configs.py; 127 tests, fresh
compilation cache, 2 workers) took 215 s instead of 263 s, the train step of a smoke config
runs as fast, and its loss after six Adam steps agrees with the default's to float32
rounding (6.552141 against 6.552140). The tests that compare runs bitwise compare programs
compiled with the same flags. Level 0 compiles faster still but is not used: with it,
DSANet's smoke training produced a non-finite gradient at its second step.
"""

CPU_OPTIMISATION = "--xla_backend_optimization_level=1"


def xla_flags(devices: int) -> str:
    """`XLA_FLAGS` for a test process with `devices` CPU devices."""
    return f"--xla_force_host_platform_device_count={devices} {CPU_OPTIMISATION}"
