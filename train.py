"""Trains a video re-ID model from a config.

    python train.py --config configs/dsanet_lsvid.py
    python train.py --config configs/synthetic.py --workdir runs/demo

The workdir defaults to runs/<config name>[_<variant>] and is printed at start. Data
parallel over all visible devices (`--config.mesh.data`), resuming from the latest
checkpoint in WORKDIR/checkpoints; WORKDIR/config.json records the config as run, and
metrics go to WORKDIR/metrics.jsonl and WORKDIR/tensorboard. The built-in default needs no
data or weights: `python train.py --config configs/synthetic.py`.

Exit status: 0 trained to the last step; 1 an error (one `error: ...` line for what the
user can fix, a traceback otherwise); 75 preempted (SIGTERM, to any process of a
multi-process run, also during start-up): every process stopped at the same step, saved
it, and the same command resumes from it.
"""

# SIGTERM from here on is recorded as a preemption notice (read at defined points: exit 75),
# before the imports below, which take seconds. Not in the worker processes that re-import
# this file (spawned, as __mp_main__): their pool ends them with SIGTERM.
from reidjax.training import preemption  # isort: skip (the standard library only)

if __name__ == "__main__":
    preemption.install()

import os
import sys

from absl import app, flags

from reidjax import cli
from reidjax.errors import ConfigError
from reidjax.runtime.workdir import Workdir
from reidjax.training import hosts, train_lib
from reidjax.training.checkpoint import CheckpointSaveError

# Exit status after SIGTERM (preemption) once the step reached is saved: EX_TEMPFAIL, "try
# again later". Non-zero so that a scheduler requeues the job; 1 means an error.
PREEMPTED = hosts.PREEMPTED

_CONFIG, _PRINT = cli.define_config_flags(
    "Experiment config file (configs/*.py), with an optional :variant"
)
flags.adopt_module_key_flags(cli)  # --config and --print_config show in --help
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Checkpoints and logs (default: runs/<config name>[_<variant>])."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")

    def run() -> int:
        if not _CONFIG.value:
            raise ConfigError("give --config CONFIG_FILE, e.g. --config configs/synthetic.py")
        config = cli.config()  # every value checked here, before anything is read
        if _PRINT.value:
            print(config)
            return 0
        # Several processes meet first, so that a notice to one of them during start-up
        # stops them all (hosts.STOPPED) instead of leaving the others waiting for it.
        hosts.initialize()
        preemption.check("after the config was read")
        workdir = Workdir(cli.workdir_or_default(_WORKDIR.value))
        overrides = [f"--{item}" for item in cli.overrides()]
        print(f"config: {' '.join([cli.config_path(), *overrides])}", flush=True)
        print(f"workdir: {workdir}", flush=True)
        try:
            state = train_lib.train_and_evaluate(config, str(workdir))
        except train_lib.Preempted as stop:
            print(stop, file=sys.stderr, flush=True)
            return PREEMPTED
        except CheckpointSaveError as e:
            # After a failed save the checkpoint writer's threads keep printing tracebacks
            # until the interpreter's teardown. Every file of ours is closed by now: mute
            # stderr for them, write this line last, and exit without the teardown.
            hosts.PeerWatch.finish(hosts.FAILED)  # several processes: the others stop too
            sys.stdout.flush()
            sys.stderr.flush()
            stderr = os.dup(2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            os.write(stderr, f"\nerror: {e}\n".encode())  # after any half-written line
            os._exit(1)
        print(f"trained to step {int(state.step)}; checkpoints in {workdir}/checkpoints")
        return 0

    def run_unless_stopped() -> int:
        try:
            return run()
        except preemption.StoppedAtStartup as stop:
            print(stop, file=sys.stderr, flush=True)
            hosts.abort(PREEMPTED, tell=hosts.STOPPED)  # several processes: all stop, 75
            return PREEMPTED

    return cli.run_or_explain(run_unless_stopped)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
