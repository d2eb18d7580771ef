"""Trains a video re-ID model from a config.

    python train.py --config configs/p3dc_mars.py --workdir runs/p3dc_mars \
        --config.init.imagenet=resnet50_imagenet.npz

Data parallel over all visible devices (`--config.mesh.data`), resuming from the latest
checkpoint in WORKDIR/checkpoints; metrics go to WORKDIR/metrics.jsonl. The built-in
default needs no data or weights:

    python train.py --config configs/synthetic.py --workdir runs/demo
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from reidjax import train_lib, weights

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax/jax INFO lines hide the progress
    os.makedirs(_WORKDIR.value, exist_ok=True)
    with open(os.path.join(_WORKDIR.value, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))
    try:
        state = train_lib.train_and_evaluate(config, _WORKDIR.value)
    except weights.WeightFileError as e:
        logging.error("%s", e)
        return 1
    print(f"trained to step {int(state.step)}; checkpoints in {_WORKDIR.value}/checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
