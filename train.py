"""Trains a video re-ID model from a config.

    python train.py --config configs/p3dc_mars.py --workdir runs/p3dc_mars \
        --config.init.imagenet=resnet50_imagenet.npz

This version performs the start-up path of training (config, model, ImageNet weights
converted by tools/convert_weights.py and inflated into the backbone) and reports it; the
training loop (input pipeline, sharded train step, checkpoints) is not implemented yet.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from reidjax import train_lib, weights
from reidjax.models.summary import count_params

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
    try:
        _, variables, report = train_lib.init_variables(config, jax.random.key(config.seed))
    except weights.WeightFileError as e:
        logging.error("%s", e)
        return 1
    print(
        f"initialised {config.model.name} ({config.model.arch}, {config.model.variant}): "
        f"{count_params(variables['params']):,} parameters, "
        + (report.summary() if report else "from scratch (config.init.imagenet is empty)")
    )
    print("the training loop is not implemented in this version; nothing was trained.")
    return 2


if __name__ == "__main__":
    sys.exit(app.run(main))
