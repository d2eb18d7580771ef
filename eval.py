"""Evaluates a trained video re-ID model on its config's test protocol.

    python eval.py --config configs/p3dc_mars.py --workdir runs/p3dc_mars

This version builds the configured model (the same start-up path as train.py) and
reports it; checkpoint restore and the CMC/mAP protocols are not implemented yet.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from reidjax import train_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory to evaluate.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    _, _, line = train_lib.startup(config)
    print(f"built {line}")
    print("checkpoint restore and evaluation are not implemented in this version.")
    return 2


if __name__ == "__main__":
    sys.exit(app.run(main))
