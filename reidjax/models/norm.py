"""BatchNorm with PyTorch's numerics, under Flax's variable names.

Two differences from `flax.linen.BatchNorm` that the lineage code (PyTorch) fixes:

- The batch variance is E[(x − μ)²] (two passes over the batch), never E[x²] − E[x]²: in
  float32 the latter loses most digits on channels whose mean dwarfs their spread (a 39%
  error measured on the re-ID head's BN1d, where PyTorch erred 0.04%).
- The running variance is updated with the *unbiased* batch variance (× n/(n − 1)), as
  `torch.nn.BatchNorm*d` does, while the batch is normalised with the biased one. For the
  trunk's BNs n = B·T·H·W is large and the factor is 1 + O(1e-5); for the head's BN1d n is
  the batch (32), so the factor is 1.03 and reaches the post-BN test feature.

With a low-precision compute dtype (bfloat16, the accelerator default) the training-mode
normalisation is one `jax.custom_vjp` (`normalise_train`): the forward writes
`x·c + (β − μ·c)` and the backward recomputes x̂ from the saved low-precision input, so no
float32 copy of `x − μ` is kept between the passes. Same formulas (two-pass variance,
PyTorch's gradient); on a TPU it cuts the step's HBM traffic (docs/benchmarks.md). In
float32 the plain operation order is kept, so float32 results are unchanged.

Variables are those of `flax.linen.BatchNorm` (`params`: scale, bias; `batch_stats`: mean,
var), so checkpoints and the ImageNet conversion are unchanged. Statistics are over every
axis but the last; under `jax.jit` with a batch sharded over devices that is the global
batch (a SyncBN).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def batch_moments(xf: Array) -> tuple[Array, Array]:
    """Mean and biased variance over every axis but the last, in two passes."""
    axes = tuple(range(xf.ndim - 1))
    mean = jnp.mean(xf, axis=axes)
    return mean, jnp.mean(jnp.square(xf - mean), axis=axes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def normalise_train(x: Array, scale: Array, bias: Array, epsilon: float, dtype: Any):
    """Training-mode BN of `x` `[..., C]` with the batch's statistics.

    Returns `(y, mean, var)`: `y` in `dtype`, the float32 batch mean and biased variance.
    The gradient is the same function's (PyTorch's BN backward, including any cotangent of
    `mean` and `var`), computed from the saved `x` in its own dtype (module docstring).
    """
    return _normalise_fwd(x, scale, bias, epsilon, dtype)[0]


def _normalise_fwd(x, scale, bias, epsilon, dtype):
    mean, var = batch_moments(x.astype(jnp.float32))
    inv = jax.lax.rsqrt(var + epsilon)
    c = scale * inv
    y = (x.astype(jnp.float32) * c + (bias - mean * c)).astype(dtype)
    return (y, mean, var), (x, mean, inv, scale)


def _normalise_bwd(epsilon, dtype, res, cts):
    del epsilon, dtype
    x, mean, inv, scale = res
    dy, dmean, dvar = cts
    dy = dy.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    centred = x.astype(jnp.float32) - mean
    dbias = jnp.sum(dy, axis=axes)
    dscale = jnp.sum(dy * (centred * inv), axis=axes)
    dx = (scale * inv / n) * (n * dy - dbias - (centred * inv) * dscale)
    dx = dx + dmean / n + dvar * (2.0 / n) * centred
    return dx.astype(x.dtype), dscale, dbias


normalise_train.defvjp(_normalise_fwd, _normalise_bwd)


class BatchNorm(nn.Module):
    """BatchNorm over all axes but the last, with PyTorch's numerics (module docstring).

    Attributes:
        use_running_average: inference mode (running statistics) when True.
        momentum: running-statistics decay, Flax convention (0.9 = torch momentum 0.1).
        epsilon: added to the variance.
        dtype: output dtype (statistics and normalisation are computed in float32).
        scale_init: initialiser of the scale γ (bias β starts at 0).
    """

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = jnp.float32
    scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x: Array, update_stats: bool = True) -> Array:
        """Normalises `x` `[..., C]`.

        Args:
            update_stats: in training mode, whether this call updates the running
                statistics; False normalises with the batch's own statistics and leaves
                them as they are (DSANet's f_aug, which must not reach the test-time BN).
        """
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        fused = not self.use_running_average and jnp.dtype(self.dtype) != jnp.float32
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        elif fused:
            y, mean, var = normalise_train(x, scale, bias, self.epsilon, self.dtype)
            mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
        else:
            mean, var = batch_moments(x.astype(jnp.float32))
        if not self.use_running_average and update_stats and not self.is_initializing():
            n = x.size // features
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            ra_mean.value = m * ra_mean.value + (1 - m) * mean
            ra_var.value = m * ra_var.value + (1 - m) * unbiased
        if fused:
            return y
        xf = x.astype(jnp.float32)
        y = (xf - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
        return y.astype(self.dtype)
