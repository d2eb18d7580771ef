"""Trains a video re-ID model from a config.

    python train.py --config configs/dsanet_lsvid.py
    python train.py --config configs/synthetic.py --workdir runs/demo

The workdir defaults to runs/<config name>[_<variant>] and is printed at start. Data
parallel over all visible devices (`--config.mesh.data`), resuming from the latest
checkpoint in WORKDIR/checkpoints; WORKDIR/config.json records the config as run, and
metrics go to WORKDIR/metrics.jsonl and WORKDIR/tensorboard. The built-in default needs no
data or weights: `python train.py --config configs/synthetic.py`.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from reidjax import cli, train_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Checkpoints and logs (default: runs/<config name>[_<variant>])."
)
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logging()
    workdir = cli.workdir_or_default(_WORKDIR.value)
    print(f"workdir: {workdir}", flush=True)

    def run() -> int:
        state = train_lib.train_and_evaluate(_CONFIG.value, workdir)
        print(f"trained to step {int(state.step)}; checkpoints in {workdir}/checkpoints")
        return 0

    return cli.run_or_explain(run)


if __name__ == "__main__":
    sys.exit(app.run(main))
