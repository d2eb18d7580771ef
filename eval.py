"""Evaluates a trained video re-ID model on its config's test protocol.

    python eval.py --config configs/p3dc_mars.py --workdir runs/p3dc_mars

This version builds the configured model (the same start-up path as train.py) and
reports it; checkpoint restore and the CMC/mAP protocols are not implemented yet.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from reidjax import train_lib, weights
from reidjax.models.summary import count_params

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory to evaluate.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    try:
        _, variables, _ = train_lib.init_variables(config, jax.random.key(config.seed))
    except weights.WeightFileError as e:
        logging.error("%s", e)
        return 1
    print(
        f"built {config.model.name} ({config.model.arch}, {config.model.variant}): "
        f"{count_params(variables['params']):,} parameters"
    )
    print("checkpoint restore and evaluation are not implemented in this version.")
    return 2


if __name__ == "__main__":
    sys.exit(app.run(main))
