"""Trains a video re-ID model from a config.

    python train.py --config configs/p3dc_mars.py --workdir runs/p3dc_mars \
        --config.init.imagenet=resnet50_imagenet.npz

This version performs the start-up path of training (config, model, ImageNet weights
converted by tools/convert_weights.py and inflated into the backbone) and reports it; the
training loop (input pipeline, sharded train step, checkpoints) is not implemented yet.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from reidjax import train_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    os.makedirs(_WORKDIR.value, exist_ok=True)
    with open(os.path.join(_WORKDIR.value, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))
    _, _, line = train_lib.startup(config)
    print(f"initialised {line}")
    print("the training loop is not implemented in this version; nothing was trained.")
    return 2


if __name__ == "__main__":
    sys.exit(app.run(main))
