"""The baseline video re-ID network: inflated ResNet trunk + re-ID head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reidjax.models.heads import ReIDHead
from reidjax.models.losses import l2_normalize
from reidjax.models.resnet3d import ResNet3D
from reidjax.models.strf import STRFConfig

Array = jax.Array


class VideoReIDNet(nn.Module):
    """C2D / I3D / P3D-A/B/C ResNet (optionally STRF-aided) with the standard re-ID head.

    Attributes:
        num_classes: training identities (0: feature extractor only).
        arch: trunk size (`resnet50`, `tiny`).
        variant: temporal block kind (`c2d`, `i3d`, `p3da`, `p3db`, `p3dc`).
        temporal_blocks: per-stage temporal block indices (None: arch default).
        last_stride: spatial stride of layer4 (1 in re-ID).
        dtype: compute dtype; parameters stay float32.
        strided_impl: strided conv/max-pool implementation (`auto`, `native`, `phase`).
        strf: STRF units in the temporal blocks (None: the plain baseline).
        remat: what the trunk's backward pass recomputes (`ResNet3D.remat`).
        nonlocal_blocks: Non-Local blocks after these blocks per stage (`ResNet3D`).
    """

    num_classes: int
    arch: str = "resnet50"
    variant: str = "c2d"
    temporal_blocks: Sequence[Sequence[int]] | None = None
    last_stride: int = 1
    dtype: Any = jnp.float32
    strided_impl: str = "auto"
    strf: STRFConfig | None = None
    remat: str = "none"
    nonlocal_blocks: Sequence[Sequence[int]] = ()

    def setup(self):
        self.backbone = ResNet3D(
            arch=self.arch,
            variant=self.variant,
            temporal_blocks=self.temporal_blocks,
            last_stride=self.last_stride,
            dtype=self.dtype,
            strided_impl=self.strided_impl,
            strf=self.strf,
            remat=self.remat,
            nonlocal_blocks=self.nonlocal_blocks,
        )
        self.head = ReIDHead(self.num_classes, dtype=self.dtype)

    def __call__(self, clips: Array, train: bool = False) -> dict[str, Array]:
        """Embeds clips `[B, T, H, W, 3]` (ImageNet-normalised float).

        Returns:
            The head's outputs (`features`, `bn_features`, `logits`) plus `embedding`, the
            test feature: post-BN, L2-normalised `[B, C]`; and the activation maps of
            layer3 and layer4 (`activation_layer3/4`, the channel mean of the stage's
            output `[B, T, h, w]`, float32: the maps of the papers' figures; computed only
            where used).
        """
        stages = self.backbone(clips, train=train)
        outputs = dict(self.head(stages["layer4"], train=train))
        outputs["embedding"] = l2_normalize(outputs["bn_features"])
        for stage in ("layer3", "layer4"):
            outputs[f"activation_{stage}"] = jnp.mean(stages[stage].astype(jnp.float32), -1)
        return outputs
