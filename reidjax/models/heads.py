"""Re-ID heads on top of a video trunk (lineage: AP3D / BNNeck)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reidjax.models.norm import BatchNorm

Array = jax.Array


def bn1d_scale_init(key, shape, dtype=jnp.float32):
    """BN1d γ ~ N(1, 0.02), the lineage initialisation of the re-ID bottleneck BN."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class ReIDHead(nn.Module):
    """Per-frame spatial max pool → temporal mean → BN1d → linear classifier.

    Attributes:
        num_classes: training identities; 0 builds a feature extractor without classifier.
        dtype: compute dtype; the returned tensors are float32.
    """

    num_classes: int
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, feature_map: Array, train: bool = False) -> dict[str, Array]:
        """Pools a trunk output into a clip embedding.

        Args:
            feature_map: `[B, T, H, W, C]`.
            train: BN1d uses batch statistics when True.

        Returns:
            `features` `[B, C]` (pre-BN, the triplet feature of STRF's lineage is post-BN),
            `bn_features` `[B, C]` (post-BN: the test feature before L2 normalisation) and,
            when `num_classes > 0`, `logits` `[B, num_classes]`.
        """
        frame_features = jnp.max(feature_map, axis=(2, 3))  # [B, T, C]
        features = jnp.mean(frame_features.astype(jnp.float32), axis=1)
        bn_features = BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            scale_init=bn1d_scale_init,
            name="bn",
        )(features)
        out = {"features": features, "bn_features": bn_features}
        if self.num_classes > 0:
            logits = nn.Dense(
                self.num_classes,
                kernel_init=nn.initializers.normal(0.001),
                bias_init=nn.initializers.zeros_init(),
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name="classifier",
            )(bn_features)
            out["logits"] = logits.astype(jnp.float32)
        return out
