"""3D convolution and max pooling with CPU-friendly gradients for spatially strided windows.

XLA:CPU computes the input gradient of a strided convolution as an lhs-dilated convolution
on a slow generic path (measured on 2 cores, see docs/benchmarks.md: the 7×7/2 stem conv's
forward+backward takes 21 s for 64 frames of 256×128, a 3×3/2 conv ~4× its stride-1
cost), and the gradient of a strided max pool as a slow select-and-scatter. The
*polyphase* form computes the same function with stride-1 operations only:

    y[i, j] = Σ_{u,v} x_pad[s·i + u, s·j + v] k[u, v]
            = Σ_{ru,rv < s} conv_valid(x_pad[ru::s, rv::s], k[ru::s, rv::s])[i, j]

i.e. s² VALID stride-1 convolutions of the phase-subsampled input with the matching
sub-kernels: the same FLOPs, and a backward pass made of stride-1 convolutions and cheap
strided-slice transposes. The max pool likewise becomes the maximum of its k² shifted,
strided slices. Accelerators (cuDNN, TPU) handle strided windows natively, so `impl="auto"`
picks the polyphase form on the CPU backend only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from reidjax.errors import ConfigError

Array = jax.Array
IMPLS = ("auto", "native", "phase")
_DIMS = ("NDHWC", "DHWIO", "NDHWC")


def _use_phase(impl: str, strides: Sequence[int]) -> bool:
    if impl not in IMPLS:
        raise ConfigError(f"Unknown strided-window impl {impl!r}; valid: {list(IMPLS)}")
    if strides[0] != 1 or all(s == 1 for s in strides[1:]):
        return False
    return impl == "phase" or (impl == "auto" and jax.default_backend() == "cpu")


def _pad(x: Array, padding: Sequence[tuple[int, int]], value: float = 0.0) -> Array:
    return jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=value)


def conv3d(
    x: Array,
    kernel: Array,
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    impl: str = "auto",
) -> Array:
    """Convolution of `x` `[B, T, H, W, Cin]` with `kernel` `[kt, kh, kw, Cin, Cout]`.

    Args:
        strides: (st, sh, sw); the polyphase form is used for sh, sw > 1 with st = 1.
        padding: explicit ((lo, hi),) * 3 zero padding (torch semantics).
        impl: `native`, `phase` or `auto` (phase on the CPU backend).
    """
    strides = tuple(strides)
    padding = tuple(tuple(p) for p in padding)
    if not _use_phase(impl, strides):
        return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMS)
    _, sh, sw = strides
    kh, kw = kernel.shape[1:3]
    xp = _pad(x, padding)
    out_h = (xp.shape[2] - kh) // sh + 1
    out_w = (xp.shape[3] - kw) // sw + 1
    out = None
    for ru in range(min(sh, kh)):
        for rv in range(min(sw, kw)):
            y = jax.lax.conv_general_dilated(
                xp[:, :, ru::sh, rv::sw],
                kernel[:, ru::sh, rv::sw],
                (1, 1, 1),
                "VALID",
                dimension_numbers=_DIMS,
            )[:, :, :out_h, :out_w]
            out = y if out is None else out + y
    return out


def max_pool3d(
    x: Array,
    window: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    impl: str = "auto",
) -> Array:
    """Max pool of `x` `[B, T, H, W, C]`, padding with -inf (torch semantics)."""
    if not _use_phase(impl, strides):
        return nn.max_pool(x, tuple(window), strides=tuple(strides), padding=tuple(padding))
    if window[0] != 1:
        raise ValueError(f"polyphase max pool needs a temporal window of 1, got {window}")
    _, sh, sw = strides
    xp = _pad(x, padding, -jnp.inf)
    out_h = (xp.shape[2] - window[1]) // sh + 1
    out_w = (xp.shape[3] - window[2]) // sw + 1
    out = None
    for u in range(window[1]):
        for v in range(window[2]):
            s = xp[:, :, u : u + sh * (out_h - 1) + 1 : sh, v : v + sw * (out_w - 1) + 1 : sw]
            out = s if out is None else jnp.maximum(out, s)
    return out


class Conv3D(nn.Module):
    """3D convolution with explicit padding; parameters `kernel` (and `bias`) as in `nn.Conv`.

    Attributes:
        features: output channels.
        kernel_size: (kt, kh, kw).
        strides: (st, sh, sw).
        padding: ((lo, hi),) * 3; None = k // 2 on each side.
        kernel_init: initialiser of the `[kt, kh, kw, Cin, features]` kernel.
        dtype: compute dtype (the kernel is stored float32).
        impl: strided-window implementation (`auto`, `native`, `phase`).
        use_bias: add a zero-initialised bias (torch's default init is not reproduced).
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1, 1)
    padding: Sequence[tuple[int, int]] | None = None
    kernel_init: Callable = nn.initializers.lecun_normal()
    dtype: Any = jnp.float32
    impl: str = "auto"
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        padding = self.padding
        if padding is None:
            padding = tuple((k // 2, k // 2) for k in self.kernel_size)
        y = conv3d(
            x.astype(self.dtype), kernel.astype(self.dtype), self.strides, padding, self.impl
        )
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        # What `ResNet3D(remat="convs")` keeps for the backward pass (an identity otherwise).
        return checkpoint_name(y, "conv")
