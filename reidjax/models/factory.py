"""Builds a model from a config (`config.model`, `config.dataset`)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from input_pipeline.datasets import dataset_info
from reidjax.models.baseline import VideoReIDNet
from reidjax.models.dsanet import DSANet, DSANetConfig
from reidjax.models.resnet3d import check_variant, get_arch
from reidjax.models.strf import STRFConfig

# baseline: inflated ResNet + re-ID head (SPEC §1); strf: the same with STRF units (§2);
# dsanet: DSANet on C2D (§3).
MODELS = ("baseline", "strf", "dsanet")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
    """Maps a config dtype name to a JAX dtype, or raises listing the valid names."""
    if name not in DTYPES:
        raise ValueError(f"Unknown compute dtype {name!r}; valid: {sorted(DTYPES)}")
    return DTYPES[name]


def num_classes(config: ml_collections.ConfigDict) -> int:
    """`config.model.num_classes`, or the dataset's training identities when it is 0."""
    return config.model.num_classes or dataset_info(config.dataset.name).num_train_ids


def strf_config(config: ml_collections.ConfigDict) -> STRFConfig:
    """The `STRFConfig` of `config.model.strf` (validated)."""
    c = config.model.strf
    return STRFConfig(
        resolutions=tuple(c.resolutions),
        pools=tuple(c.pools),
        factors=tuple(c.factors),
        integration=c.integration,
        l2_normalize=c.l2_normalize,
        kappa=c.kappa,
        reduction=c.reduction,
        stages=tuple(c.stages),
    )


def dsanet_config(config: ml_collections.ConfigDict) -> DSANetConfig:
    """The `DSANetConfig` of `config.model.dsanet` (validated)."""
    return DSANetConfig(**config.model.dsanet.to_dict())


def num_cameras(config: ml_collections.ConfigDict) -> int:
    """The dataset's number of cameras (DSANet's camera classifier): `dataset.num_cameras`,
    or the registry's when it is 0."""
    return config.dataset.num_cameras or dataset_info(config.dataset.name).num_cameras


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """Returns the (unbound) Flax module described by `config`.

    Raises:
        ValueError: unknown model name, arch, variant, dtype or dataset, listing valid ones.
    """
    m = config.model
    if m.name not in MODELS:
        raise ValueError(f"Unknown model {m.name!r}; valid: {list(MODELS)}")
    get_arch(m.arch)
    check_variant(m.variant)
    if m.name == "dsanet":
        if m.variant != "c2d":
            raise ValueError(
                f"DSANet is built on the C2D backbone; got model.variant={m.variant!r}"
            )
        return DSANet(
            num_classes=num_classes(config),
            num_cameras=num_cameras(config),
            switches=dsanet_config(config),
            arch=m.arch,
            last_stride=m.last_stride,
            dtype=compute_dtype(m.dtype),
            strided_impl=m.strided_conv,
        )
    return VideoReIDNet(
        num_classes=num_classes(config),
        arch=m.arch,
        variant=m.variant,
        temporal_blocks=None if m.temporal_blocks is None else tuple(map(tuple, m.temporal_blocks)),
        last_stride=m.last_stride,
        dtype=compute_dtype(m.dtype),
        strided_impl=m.strided_conv,
        strf=strf_config(config) if m.name == "strf" else None,
    )


def dummy_clips(config: ml_collections.ConfigDict, batch_size: int = 1) -> jnp.ndarray:
    """A zero clip batch `[B, T, H, W, 3]` of the config's input shape (for init/shapes)."""
    i = config.input
    return jnp.zeros((batch_size, i.num_frames, i.height, i.width, 3), jnp.float32)
