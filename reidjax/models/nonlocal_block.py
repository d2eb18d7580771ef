"""The Non-Local block of the lineage (AP3D `models/NonLocal.py`, `NonLocalBlock3D`).

Embedded Gaussian, on a `[B, T, H, W, C]` map with C' = C/2 inner channels:

    θ = x W_θ,  φ = maxpool_(1,2,2)(x W_φ),  g = maxpool_(1,2,2)(x W_g)   (1×1×1 convs, bias)
    y = softmax(θ φᵀ) g                  (over the T·H/2·W/2 pooled positions, per query)
    z = BN(y W_W) + x                    (1×1×1 conv with bias, then BatchNorm)

Every 1×1×1 conv's kernel starts as N(0, 2/C_out) (AP3D's loop over its convs), its bias as
PyTorch's default U(±1/√C_in); the BN's scale and bias start at zero, so the block is the
identity at initialisation and the network computes the backbone without it. The max pool
is PyTorch's `MaxPool3d((1, 2, 2))`: no padding, an odd last row or column is dropped.
AP3D's `AP3DNLResNet50` puts one after layer2 blocks 1, 3 and layer3 blocks 1, 3, 5 (the
STRF paper's §3.3 comparison, `configs/p3dc_mars.py:nonlocal`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reidjax.models.conv import max_pool3d
from reidjax.models.norm import BatchNorm

Array = jax.Array


def torch_bias_init(fan_in: int):
    """PyTorch's default bias of a conv / linear layer: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class NonLocal(nn.Module):
    """AP3D's `NonLocalBlock3D(C, sub_sample=True, bn_layer=True)` (module docstring).

    Attributes:
        dtype: compute dtype (the attention's softmax is computed in float32).
        bn_momentum, bn_epsilon: the BN after W (Flax momentum convention).
        strided_impl: the max pool's implementation (`reidjax.models.conv`).
    """

    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    strided_impl: str = "auto"

    def _conv(self, features: int, fan_in: int, name: str) -> nn.Dense:
        return nn.Dense(
            features,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
            bias_init=torch_bias_init(fan_in),
            name=name,
        )

    def _pool(self, x: Array) -> Array:
        return max_pool3d(x, (1, 2, 2), (1, 2, 2), ((0, 0), (0, 0), (0, 0)), self.strided_impl)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Returns `x` plus the block's response, the same shape `[B, T, H, W, C]`."""
        b, c = x.shape[0], x.shape[-1]
        inner = max(c // 2, 1)
        theta = self._conv(inner, c, "theta")(x).reshape(b, -1, inner)
        phi = self._pool(self._conv(inner, c, "phi")(x)).reshape(b, -1, inner)
        g = self._pool(self._conv(inner, c, "g")(x)).reshape(b, -1, inner)
        logits = jnp.einsum("bqc,bkc->bqk", theta, phi, preferred_element_type=jnp.float32)
        attention = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        y = jnp.einsum("bqk,bkc->bqc", attention, g).reshape(*x.shape[:-1], inner)
        y = self._conv(c, inner, "W")(y)
        y = BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            scale_init=nn.initializers.zeros_init(),
            name="W_bn",
        )(y)
        return y + x
