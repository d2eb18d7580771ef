"""BatchNorm with PyTorch's numerics, under Flax's variable names.

Two differences from `flax.linen.BatchNorm` that the lineage code (PyTorch) fixes:

- The batch variance is E[(x − μ)²] (two passes over the batch), never E[x²] − E[x]²: in
  float32 the latter loses most digits on channels whose mean dwarfs their spread (a 39%
  error measured on the re-ID head's BN1d, where PyTorch erred 0.04%).
- The running variance is updated with the *unbiased* batch variance (× n/(n − 1)), as
  `torch.nn.BatchNorm*d` does, while the batch is normalised with the biased one. For the
  trunk's BNs n = B·T·H·W is large and the factor is 1 + O(1e-5); for the head's BN1d n is
  the batch (32), so the factor is 1.03 and reaches the post-BN test feature.

Training mode has its own backward pass (`batch_norm_train`, a `jax.custom_vjp`): it keeps
only the input (in the compute dtype: bfloat16 on accelerators) and two numbers per
channel, and recomputes the normalised activation in float32 inside the backward's fused
kernels. Differentiated automatically, the forward pass would keep `x − μ` in float32 for
the backward, twice the bytes of a bfloat16 activation, written and read back at every BN
of the trunk. The forward is the same expression as before (bitwise); the gradient is the
same formula up to float32 rounding. `relu` likewise keeps its output (which the next
convolution keeps anyway) instead of a separate mask.

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


@jax.custom_vjp
def relu(x: Array) -> Array:
    """max(x, 0), whose backward reads its output (y > 0 exactly where x > 0)."""
    return jnp.maximum(x, 0)


def _relu_fwd(x):
    y = jnp.maximum(x, 0)
    return y, y


def _relu_bwd(y, g):
    return (jnp.where(y > 0, g, jnp.zeros_like(g)),)


relu.defvjp(_relu_fwd, _relu_bwd)


def _statistics(x: Array) -> tuple[Array, Array, Array]:
    """float32 x, its per-channel mean and biased variance E[(x − μ)²] (two passes)."""
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=axes)
    return xf, mean, jnp.mean(jnp.square(xf - mean), axis=axes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(x: Array, scale: Array, bias: Array, epsilon: float, dtype: Any):
    """Training-mode BN of `x` `[..., C]` with the batch's statistics.

    Returns:
        (y in `dtype`, batch mean, biased batch variance), statistics in float32.
    """
    return _batch_norm_fwd(x, scale, bias, epsilon, dtype)[0]


def _batch_norm_fwd(x, scale, bias, epsilon, dtype):
    xf, mean, var = _statistics(x)
    rstd = jax.lax.rsqrt(var + epsilon)
    y = (xf - mean) * (scale * rstd) + bias
    return (y.astype(dtype), mean, var), (x, mean, rstd, scale)


def _batch_norm_bwd(epsilon, dtype, residuals, cotangents):
    del epsilon, dtype
    x, mean, rstd, scale = residuals
    dy, dmean, dvar = cotangents
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    xf, dyf = x.astype(jnp.float32), dy.astype(jnp.float32)
    centred = xf - mean
    dbias = jnp.sum(dyf, axis=axes)
    dscale = jnp.sum(dyf * centred, axis=axes) * rstd
    # d/dx of (x − μ)·γ·rstd through x, μ and σ², plus the statistics' own cotangents.
    k = scale * rstd
    dx = k * dyf - (k * dbias / n) - centred * (k * rstd * dscale / n)
    dx = dx + dmean / n + centred * (2 * dvar / n)
    return dx.astype(x.dtype), dscale, dbias


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


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
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
            y = (x.astype(jnp.float32) - mean) * (scale * jax.lax.rsqrt(var + self.epsilon))
            return (y + bias).astype(self.dtype)
        y, mean, var = batch_norm_train(x, scale, bias, self.epsilon, self.dtype)
        if update_stats and not self.is_initializing():
            n = x.size // features
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            ra_mean.value = m * ra_mean.value + (1 - m) * mean
            ra_var.value = m * ra_var.value + (1 - m) * unbiased
        return y
