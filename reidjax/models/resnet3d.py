"""Inflated ResNet-50 backbones for video: C2D, I3D, P3D-A, P3D-B and P3D-C.

Layout is NTHWC (`[B, T, H, W, C]`). Every 2D convolution of the torchvision ResNet-50 becomes
a 3D convolution with temporal kernel 1, except the 3×3 `conv2` of the *temporal blocks*
(layer2 blocks {0, 2} and layer3 blocks {0, 2, 4} by default), which the variant replaces:

| variant | conv2 becomes                                         | temporal init            |
|---------|-------------------------------------------------------|--------------------------|
| c2d     | S = (1,3,3) conv                                      | —                        |
| i3d     | (3,3,3) conv, padding (1,1,1)                         | centre slice = 2D kernel |
| p3da    | T(S(x)), T = (3,1,1) conv                             | T = identity (centre)    |
| p3db    | S(x) + T(x), T = (3,1,1) conv, stride (1,s,s)         | T = 0                    |
| p3dc    | s + T(s) with s = S(x)                                | T = 0                    |

so that, with the same 2D weights, every variant computes the C2D network at initialisation.
No layer pools or strides over time: T is preserved end to end.

Parameter names mirror torchvision's (`layer2_0/conv2` ↔ `layer2.0.conv2`), which keeps the
weight conversion in `reidjax.pretrained.weights` a pure renaming; the temporal conv of a
P3D block is `conv2_t`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reidjax.errors import ConfigError
from reidjax.models.conv import Conv3D, max_pool3d
from reidjax.models.nonlocal_block import NonLocal
from reidjax.models.norm import BatchNorm
from reidjax.models.remat import KEEP_CONV_OUTPUTS, MODES
from reidjax.models.strf import STRF, STRFConfig

VARIANTS = ("c2d", "i3d", "p3da", "p3db", "p3dc")

Array = jax.Array
Dtype = Any


@dataclasses.dataclass(frozen=True)
class Arch:
    """Depth and width of a bottleneck ResNet.

    Attributes:
        stage_sizes: blocks per stage (layer1..layer4).
        width: planes of layer1 (the stem has this many channels too); stage i has
            `width * 2**i` planes and `4 * width * 2**i` output channels.
        temporal_blocks: default 0-based indices of the temporal blocks per stage.
    """

    stage_sizes: tuple[int, ...]
    width: int
    temporal_blocks: tuple[tuple[int, ...], ...]

    @property
    def out_features(self) -> int:
        return 4 * self.width * 2 ** (len(self.stage_sizes) - 1)


ARCHS = {
    # torchvision ResNet-50; temporal blocks as in AP3D / STRF.
    "resnet50": Arch((3, 4, 6, 3), 64, ((), (0, 2), (0, 2, 4), ())),
    # One block per stage, narrow: for tests (output 256 channels).
    "tiny": Arch((1, 1, 1, 1), 8, ((), (0,), (0,), ())),
}


def get_arch(name: str) -> Arch:
    """Returns the architecture called `name`, or raises listing the valid names."""
    if name not in ARCHS:
        raise ConfigError(f"Unknown backbone arch {name!r}; valid: {sorted(ARCHS)}")
    return ARCHS[name]


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"Unknown backbone variant {variant!r}; valid: {list(VARIANTS)}")
    return variant


# torchvision initialises convolutions with kaiming_normal(mode='fan_out', relu).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def centre_init(base_init: Callable = conv_init) -> Callable:
    """Initialiser for a `(kt, kh, kw, cin, cout)` kernel: `base_init` in the centre slice.

    The other temporal slices are zero, so the conv computes its 2D centre kernel per frame.
    """

    def init(key, shape, dtype=jnp.float32):
        kt = shape[0]
        centre = base_init(key, (1, *shape[1:]), dtype)
        return jnp.pad(centre, ((kt // 2, kt - 1 - kt // 2),) + ((0, 0),) * (len(shape) - 1))

    return init


def temporal_identity_init(key, shape, dtype=jnp.float32):
    """Initialiser for a `(kt, 1, 1, c, c)` kernel that is the identity at the centre tap."""
    del key
    kt, kh, kw, cin, cout = shape
    if (kh, kw) != (1, 1) or cin != cout:
        raise ValueError(f"identity init needs a (kt, 1, 1, c, c) kernel, got {shape}")
    kernel = np.zeros(shape, np.float32)
    kernel[kt // 2, 0, 0] = np.eye(cin, dtype=np.float32)
    return jnp.asarray(kernel, dtype)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3×3 conv) with an optional temporal conv2.

    Attributes:
        planes: width of conv1/conv2; the block outputs `4 * planes` channels.
        stride: spatial stride of conv2 and of the downsample shortcut.
        temporal: the variant of conv2 (`c2d` for a non-temporal block).
        downsample: whether the shortcut is a strided 1×1×1 conv + BN.
        dtype: compute dtype.
        strided_impl: implementation of spatially strided convs (`reidjax.models.conv`).
        strf: when set, an STRF unit on the input of the temporal conv.
    """

    planes: int
    stride: int = 1
    temporal: str = "c2d"
    downsample: bool = False
    dtype: Dtype = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    strided_impl: str = "auto"
    strf: STRFConfig | None = None

    def _strf(self, x: Array) -> Array:
        if self.strf is None:
            return x
        return STRF(self.strf, dtype=self.dtype, name="strf")(x)

    def _conv(self, features, kernel, stride=(1, 1, 1), name=None, init=conv_init):
        return Conv3D(
            features,
            kernel,
            strides=stride,
            kernel_init=init,
            dtype=self.dtype,
            impl=self.strided_impl,
            name=name,
        )

    def _bn(self, train: bool, name: str) -> BatchNorm:
        return BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            name=name,
        )

    def temporal_conv2(self, x: Array) -> Array:
        """The (possibly factorised) 3×3 conv2 of the block; no BN/ReLU inside.

        An STRF unit, when configured, processes the input of the temporal conv.
        """
        s = (1, self.stride, self.stride)
        variant = self.temporal
        if self.strf is not None and variant == "c2d":
            raise ConfigError("STRF needs a temporal block (i3d, p3da, p3db or p3dc), not c2d")
        if variant == "i3d":  # one conv: both positions are its input
            conv = self._conv(self.planes, (3, 3, 3), s, name="conv2", init=centre_init())
            return conv(self._strf(x))
        spatial = self._conv(self.planes, (1, 3, 3), s, name="conv2")
        if variant == "c2d":
            return spatial(x)
        # The STRF unit on the input of the temporal conv T (the paper's place) or of the
        # spatial conv S (`strf.position="spatial"`, supplementary Fig. 2).
        at_s = self.strf is not None and self.strf.position == "spatial"
        s_in, t_in = (self._strf, lambda v: v) if at_s else (lambda v: v, self._strf)
        if variant == "p3da":
            t = self._conv(self.planes, (3, 1, 1), name="conv2_t", init=temporal_identity_init)
            return t(t_in(spatial(s_in(x))))
        zeros = nn.initializers.zeros_init()
        if variant == "p3db":
            t = self._conv(self.planes, (3, 1, 1), s, name="conv2_t", init=zeros)
            return spatial(s_in(x)) + t(t_in(x))
        if variant == "p3dc":
            t = self._conv(self.planes, (3, 1, 1), name="conv2_t", init=zeros)
            y = spatial(s_in(x))
            return y + t(t_in(y))
        raise ConfigError(f"Unknown temporal variant {variant!r}; valid: {list(VARIANTS)}")

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the block to `x` `[B, T, H, W, C]`; returns `[B, T, H/s, W/s, 4*planes]`."""
        y = self._conv(self.planes, (1, 1, 1), name="conv1")(x)
        y = nn.relu(self._bn(train, "bn1")(y))
        y = self.temporal_conv2(y)
        y = nn.relu(self._bn(train, "bn2")(y))
        y = self._conv(4 * self.planes, (1, 1, 1), name="conv3")(y)
        y = self._bn(train, "bn3")(y)
        shortcut = x
        if self.downsample:
            s = (1, self.stride, self.stride)
            shortcut = self._conv(4 * self.planes, (1, 1, 1), s, name="downsample_conv")(x)
            shortcut = self._bn(train, "downsample_bn")(shortcut)
        return nn.relu(y + shortcut)


def _stem(trunk: ResNet3D, x: Array, train: bool) -> Array:
    """The stem of `trunk` (conv1, bn1, ReLU, max pool), its layers named as the trunk's."""
    x = Conv3D(
        get_arch(trunk.arch).width,
        (1, 7, 7),
        strides=(1, 2, 2),
        padding=((0, 0), (3, 3), (3, 3)),
        kernel_init=conv_init,
        dtype=trunk.dtype,
        impl=trunk.strided_impl,
        name="conv1",
        parent=trunk,
    )(x)
    x = BatchNorm(
        use_running_average=not train,
        momentum=trunk.bn_momentum,
        epsilon=trunk.bn_epsilon,
        dtype=trunk.dtype,
        name="bn1",
        parent=trunk,
    )(x)
    x = nn.relu(x)
    # torchvision pads the max pool with -inf, as max_pool3d does.
    return max_pool3d(x, (1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1)), trunk.strided_impl)


class ResNet3D(nn.Module):
    """Inflated bottleneck ResNet trunk (stem + layer1..layer4), NTHWC in and out.

    Attributes:
        arch: `ARCHS` key (`resnet50`, or `tiny` for tests).
        variant: one of `VARIANTS`; the kind of temporal block.
        temporal_blocks: 0-based temporal block indices per stage; None = the arch default
            (layer2 {0, 2}, layer3 {0, 2, 4} for ResNet-50).
        last_stride: spatial stride of layer4 (1 for re-ID, 2 for ImageNet).
        dtype: compute dtype (parameters are always float32).
        strided_impl: `auto` (polyphase strided convs/max pool on CPU, where XLA's strided
            backward is slow; native elsewhere), `native` or `phase`. Same function.
        strf: STRF units in the temporal blocks of `strf.stages` (None: no STRF).
        remat: what the backward pass recomputes (`nn.remat`; same function and gradients):
            `none`; `convs` (the stem and blocks keep their convolutions' outputs and BN
            statistics, the elementwise work between them is recomputed); `blocks` (only
            each block's input is kept). The config's `auto` is resolved before the model
            is built (`reidjax.models.remat.remat_mode`, called by the factory).
        nonlocal_blocks: per stage, the 0-based blocks followed by a Non-Local block
            (`reidjax.models.nonlocal_block`, named `layer<s>_<i>_nonlocal`); () = none.
    """

    arch: str = "resnet50"
    variant: str = "c2d"
    temporal_blocks: Sequence[Sequence[int]] | None = None
    last_stride: int = 1
    dtype: Dtype = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    strided_impl: str = "auto"
    strf: STRFConfig | None = None
    remat: str = "none"
    nonlocal_blocks: Sequence[Sequence[int]] = ()

    def _per_stage(self, blocks, name: str) -> tuple[tuple[int, ...], ...]:
        """`blocks` (0-based block indices per stage) checked against the arch."""
        spec = get_arch(self.arch)
        blocks = tuple(tuple(int(i) for i in stage) for stage in blocks)
        if len(blocks) != len(spec.stage_sizes):
            raise ConfigError(
                f"{name} needs one entry per stage ({len(spec.stage_sizes)}), got {blocks}"
            )
        for stage, (indices, size) in enumerate(zip(blocks, spec.stage_sizes, strict=True)):
            bad = [i for i in indices if not 0 <= i < size]
            if bad:
                raise ConfigError(
                    f"{name} for layer{stage + 1} has indices {bad} but arch "
                    f"{self.arch!r} has {size} block(s) there"
                )
        return blocks

    def resolved_nonlocal_blocks(self) -> tuple[tuple[int, ...], ...]:
        """The Non-Local block positions per stage, validated against the arch."""
        if not self.nonlocal_blocks:
            return ((),) * len(get_arch(self.arch).stage_sizes)
        return self._per_stage(self.nonlocal_blocks, "nonlocal_blocks")

    def resolved_temporal_blocks(self) -> tuple[tuple[int, ...], ...]:
        """The temporal block indices per stage, validated against the arch."""
        spec = get_arch(self.arch)
        blocks = spec.temporal_blocks if self.temporal_blocks is None else self.temporal_blocks
        blocks = self._per_stage(blocks, "temporal_blocks")
        if self.strf is not None:
            if self.variant == "c2d":
                raise ConfigError("STRF needs temporal blocks: set model.variant to i3d or p3d*")
            for stage in self.strf.stages:
                if not blocks[int(stage[-1]) - 1]:
                    raise ConfigError(
                        f"STRF stage {stage} has no temporal block; add its indices to "
                        f"model.temporal_blocks (now {blocks})"
                    )
        return blocks

    def _block_strf(self, stage: int, temporal: bool) -> STRFConfig | None:
        if self.strf is None or not temporal or f"layer{stage + 1}" not in self.strf.stages:
            return None
        return self.strf

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
        """Runs the trunk.

        Args:
            x: clips `[B, T, H, W, 3]`, ImageNet-normalised.
            train: BatchNorm uses batch statistics (over N, T, H, W) and updates its
                running averages when True.

        Returns:
            Stage outputs `{"layer1": ..., "layer4": [B, T, H/16, W/16, C_out]}` (with
            last stride 1); unused ones cost nothing under jit.
        """
        check_variant(self.variant)
        spec = get_arch(self.arch)
        temporal = self.resolved_temporal_blocks()
        nonlocal_blocks = self.resolved_nonlocal_blocks()
        x = x.astype(self.dtype)
        mode = self.remat
        if mode not in MODES:
            raise ValueError(
                f"ResNet3D.remat={mode!r}; valid: {list(MODES)} (resolve 'auto' first)"
            )
        stem = _stem
        if mode == "convs":
            stem = nn.remat(_stem, static_argnums=(2,), policy=KEEP_CONV_OUTPUTS)
        x = stem(self, x, train)
        outputs = {}
        # `train` (argument 2, counting the module) is a Python bool: static under remat.
        block_cls = Bottleneck
        if mode != "none":
            policy = KEEP_CONV_OUTPUTS if mode == "convs" else None
            block_cls = nn.remat(Bottleneck, static_argnums=(2,), policy=policy)
        for stage, num_blocks in enumerate(spec.stage_sizes):
            planes = spec.width * 2**stage
            for block in range(num_blocks):
                stride = 1
                if block == 0 and stage > 0:
                    stride = self.last_stride if stage == len(spec.stage_sizes) - 1 else 2
                x = block_cls(
                    planes,
                    stride=stride,
                    temporal=self.variant if block in temporal[stage] else "c2d",
                    downsample=block == 0,
                    dtype=self.dtype,
                    bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon,
                    strided_impl=self.strided_impl,
                    strf=self._block_strf(stage, block in temporal[stage]),
                    name=f"layer{stage + 1}_{block}",
                )(x, train)
                if block in nonlocal_blocks[stage]:
                    x = NonLocal(
                        dtype=self.dtype,
                        bn_momentum=self.bn_momentum,
                        bn_epsilon=self.bn_epsilon,
                        strided_impl=self.strided_impl,
                        name=f"layer{stage + 1}_{block}_nonlocal",
                    )(x, train)
            outputs[f"layer{stage + 1}"] = x
        return outputs


class ImageNetResNet(nn.Module):
    """The 2D ImageNet classifier (torchvision ResNet-50 layout) on `[N, H, W, 3]` images.

    It is the C2D trunk on one-frame clips with last stride 2, global average pooling and a
    1000-way `fc`, so its parameters are those of `ResNet3D(variant="c2d")` plus `fc`.
    """

    arch: str = "resnet50"
    num_classes: int = 1000
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: Array, train: bool = False) -> Array:
        """Returns logits `[N, num_classes]` (float32) for images `[N, H, W, 3]`."""
        trunk = ResNet3D(
            arch=self.arch, variant="c2d", last_stride=2, dtype=self.dtype, name="backbone"
        )
        x = trunk(images[:, None], train=train)["layer4"]
        x = jnp.mean(x, axis=(1, 2, 3))
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="fc")(x)
        return x.astype(jnp.float32)
