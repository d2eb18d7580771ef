"""Every config value checked when the config is loaded, before anything is read or compiled.

`validate(config)` is called by every loader (`config_lib.load_config`, overrides on the
command line, `run_config.load_run_config`). Each named choice is checked against the one
tuple that names it in the code that uses it (so adding a sampler there adds it here), each
number against its range, and the model dataclasses (`STRFConfig`, `DSANetConfig`) and the
trunk's temporal blocks are built, so that incompatible switches fail here too. Every
failure is one `ConfigError` naming the key, the value and what would work.
"""

from __future__ import annotations

import math

import ml_collections

from input_pipeline import registry
from input_pipeline.pipelines import WORKER_KINDS
from input_pipeline.sampling import (
    BATCH_SAMPLERS,
    CLIP_WEIGHTS,
    STRIDE_THRESHOLDS,
    TEST_PADDINGS,
    TEST_SAMPLERS,
    TRAIN_SAMPLERS,
)
from reidjax.errors import ConfigError
from reidjax.evaluation import metrics
from reidjax.models import losses
from reidjax.models.conv import IMPLS
from reidjax.models.dsanet import TEST_FEATURES
from reidjax.models.factory import DTYPES, MODELS, check_config
from reidjax.models.remat import REMATS
from reidjax.models.resnet3d import ARCHS, VARIANTS
from reidjax.training import optim

# key -> the valid values (the tuples the code itself dispatches on).
CHOICES = {
    "dataset.name": tuple(registry.DATASETS),
    "input.worker_kind": WORKER_KINDS,
    "input.train_sampler": TRAIN_SAMPLERS,
    "input.stride_threshold": STRIDE_THRESHOLDS,
    "input.test_sampler": TEST_SAMPLERS,
    "input.test_padding": TEST_PADDINGS,
    "eval.clip_weights": CLIP_WEIGHTS,
    "model.name": MODELS,
    "model.arch": tuple(ARCHS),
    "model.variant": VARIANTS,
    "model.dtype": ("auto", *DTYPES),
    "model.strided_conv": IMPLS,
    "model.remat": REMATS,
    "model.dsanet.test_feature": TEST_FEATURES,
    "loss.triplet_distance": losses.DISTANCES,
    "loss.triplet_feature": ("bn_features", "features"),
    "loss.ic_reduction": ("mean", "sum"),
    "train.batch_sampler": BATCH_SAMPLERS,
    "eval.distance": tuple(metrics.DISTANCES),
    "optim.name": optim.OPTIMIZERS,
}

# key -> (lowest, highest, what it is); None: no bound on that side. Integers and floats
# alike; `>` bounds below.
RANGES = {
    "seed": (0, None),
    "dataset.split": (0, registry.NUM_SPLITS - 1),
    "dataset.num_cameras": (0, None),
    "dataset.synthetic_ids": (4, None),
    "dataset.synthetic_cameras": (2, None),
    "input.num_frames": (1, None),
    "input.workers": (0, None),
    "input.height": (32, None),
    "input.width": (32, None),
    "input.frame_stride": (1, None),
    "input.flip_prob": (0, 1),
    "input.erasing_prob": (0, 1),
    "model.last_stride": (1, 2),
    "model.num_classes": (0, None),
    "loss.ce_weight": (0, None),
    "loss.label_smoothing": (0, 0.999),
    "loss.triplet_weight": (0, None),
    "loss.triplet_margin": (0, None),
    "loss.dsanet_lambda": (0, None),
    "loss.dsanet_lambda_cam": (0, None),
    "train.ids_per_batch": (1, None),
    "train.clips_per_id": (1, None),
    "train.epochs": (1, None),
    "train.num_steps": (0, None),
    "train.log_every": (1, None),
    "train.checkpoint_every": (1, None),
    "train.keep_checkpoints": (1, None),
    "train.profile_steps": (0, None),
    "train.eval_every": (-1, None),
    "eval.batch_size": (1, None),
    "eval.max_rank": (1, None),
    "eval.rerank_k1": (1, None),
    "eval.rerank_k2": (1, None),
    "eval.rerank_lambda": (0, 1),
    "optim.weight_decay": (0, None),
    "optim.lr_decay_every_epochs": (0, None),
    "optim.lr_decay_factor": (0, 1),
    "optim.warmup_epochs": (0, None),
    "optim.grad_clip_norm": (0, None),
}
# Strictly positive: a zero here trains nothing or divides by zero.
POSITIVE = ("optim.lr",)


def get(config: ml_collections.ConfigDict, key: str):
    """`config.a.b` for `key` "a.b"."""
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def _check_choices(config: ml_collections.ConfigDict) -> None:
    for key, valid in CHOICES.items():
        value = get(config, key)
        if value not in valid:
            raise ConfigError(f"config.{key}={value!r} is not one of {list(valid)}")


def _check_ranges(config: ml_collections.ConfigDict) -> None:
    for key, (low, high) in RANGES.items():
        value = get(config, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config.{key}={value!r} must be a number")
        if (low is not None and value < low) or (high is not None and value > high):
            span = f">= {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(f"config.{key}={value!r} must be {span}")
    for key in POSITIVE:
        value = get(config, key)
        if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
            raise ConfigError(f"config.{key}={value!r} must be a finite number > 0")


def _check_training(config: ml_collections.ConfigDict) -> None:
    d = config.dataset
    if d.name == "folder" and not d.folder_name:
        raise ConfigError(
            "config.dataset.folder_name is empty: set it to the --name the dataset was built "
            "with (python -m input_pipeline build --dataset folder --name NAME ...)"
        )
    if d.dense_train and registry.get(d.name).dense_rule is None:
        cut = sorted(n for n, s in registry.DATASETS.items() if s.dense_rule)
        raise ConfigError(
            f"config.dataset.dense_train=True: {d.name} has no dense rule (it trains on whole "
            f"tracklets; defined for {', '.join(cut)}); set it to False"
        )
    for prefix in config.optim.freeze:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(
                f"config.optim.freeze={tuple(config.optim.freeze)!r}: give '/'-joined "
                "parameter path prefixes, e.g. ('backbone/conv1',)"
            )


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every value of `config`; returns it unchanged.

    Raises:
        ConfigError: the first value that cannot work, in one line.
    """
    _check_choices(config)
    _check_ranges(config)
    check_config(config)
    _check_training(config)
    return config
