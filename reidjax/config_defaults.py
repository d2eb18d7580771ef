"""The complete set of config knobs, with defaults; every experiment config starts here.

Configs are `ml_collections.ConfigDict`s, locked after construction so that a misspelt key
(`--config.model.varient=i3d`) fails instead of being silently ignored.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """Returns the default config (full-size C2D on MARS at 256×128, 4-frame clips)."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "mars"

    config.input = ml_collections.ConfigDict()
    config.input.num_frames = 4  # T: frames per clip.
    config.input.height = 256
    config.input.width = 128

    config.model = ml_collections.ConfigDict()
    config.model.name = "baseline"
    config.model.arch = "resnet50"  # or "tiny" (tests).
    config.model.variant = "c2d"  # c2d | i3d | p3da | p3db | p3dc.
    # Per-stage 0-based temporal block indices; None = arch default (layer2 {0,2},
    # layer3 {0,2,4} for ResNet-50).
    config.model.temporal_blocks = config_dict.placeholder(tuple)
    config.model.last_stride = 1
    config.model.num_classes = 0  # 0: the dataset's number of training identities.
    config.model.dtype = "float32"  # compute dtype: float32 | bfloat16.
    # Spatially strided convs / max pool: "auto" = polyphase (stride-1 ops, same function) on
    # the CPU backend, where XLA's strided backward is slow; native on GPU/TPU.
    config.model.strided_conv = "auto"  # auto | native | phase.

    config.init = ml_collections.ConfigDict()
    # ImageNet weights (.npz / .safetensors converted by tools/convert_weights.py, or a
    # torchvision .pth when torch is installed); "" starts from scratch.
    config.init.imagenet = ""
    return config


def apply_variant(config: ml_collections.ConfigDict, arg: str | None, variants: dict) -> None:
    """Applies the `:arg` suffix of a config path (`configs/x.py:smoke,backbone=p3db`).

    Args:
        config: the config to update in place.
        arg: comma-separated items, each a named variant (`smoke`) or `key=value`.
        variants: named variant -> function(config) that applies it; `key=value` items
            set `config.model.<key>` for `backbone=` (alias of `model.variant`).

    Raises:
        ValueError: an unknown variant or key, listing the valid ones.
    """
    if not arg:
        return
    for item in arg.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            key, value = (s.strip() for s in item.split("=", 1))
            if key != "backbone":
                raise ValueError(f"Unknown config arg key {key!r}; valid: ['backbone']")
            config.model.variant = value
        elif item in variants:
            variants[item](config)
        else:
            raise ValueError(
                f"Unknown config variant {item!r}; valid: {sorted(variants)} or backbone=NAME"
            )


def smoke(config: ml_collections.ConfigDict) -> None:
    """Tiny model, tiny frames: the variant tests use (one block per stage, 32×16, T=2)."""
    config.model.arch = "tiny"
    config.input.num_frames = 2
    config.input.height = 32
    config.input.width = 16
