"""Training entry logic shared by `train.py` and `eval.py`: model set-up from a config.

Start-up order (STYLE.md): shapes first (`jax.eval_shape` of the init), then the
variables, then the ImageNet weights of `config.init.imagenet` inflated into the trunk.
"""

from __future__ import annotations

import logging

import flax.linen as nn
import jax
import ml_collections

from reidjax import weights
from reidjax.models import build_model
from reidjax.models.factory import dummy_clips
from reidjax.models.summary import count_params


def init_variables(
    config: ml_collections.ConfigDict, key: jax.Array
) -> tuple[nn.Module, dict, weights.InflationReport | None]:
    """Builds the configured model and its initial variables.

    Args:
        config: experiment config (`model`, `dataset`, `input`, `init`).
        key: PRNG key of the initialisation.

    Returns:
        (model, variables, report): `report` says what the ImageNet initialisation copied,
        inflated or kept (None when `config.init.imagenet` is empty).

    Raises:
        ValueError: unknown model/dataset names; `weights.WeightFileError` for a missing or
            mismatched weight file (the message names the conversion command).
    """
    model = build_model(config)
    clips = dummy_clips(config)
    variables = jax.jit(model.init)(key, clips)
    report = None
    if config.init.imagenet:
        variables, report = weights.load_imagenet(config.init.imagenet, variables)
        logging.info("%s", report.summary())
    logging.info(
        "model %s/%s/%s: %s parameters",
        config.model.name,
        config.model.arch,
        config.model.variant,
        f"{count_params(variables['params']):,}",
    )
    return model, variables, report


def startup(config: ml_collections.ConfigDict) -> tuple[nn.Module, dict, str]:
    """The start-up path of both entry points: model, initial variables, one-line report.

    Raises:
        SystemExit: (code 1) with the message of a missing or mismatched weight file,
            which names the conversion command.
    """
    try:
        model, variables, report = init_variables(config, jax.random.key(config.seed))
    except weights.WeightFileError as e:
        logging.error("%s", e)
        raise SystemExit(1) from e
    line = (
        f"{config.model.name} ({config.model.arch}, {config.model.variant}): "
        f"{count_params(variables['params']):,} parameters, "
        + (report.summary() if report else "from scratch (config.init.imagenet is empty)")
    )
    return model, variables, line
