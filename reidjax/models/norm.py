"""BatchNorm with PyTorch's numerics, under Flax's variable names.

Two differences from `flax.linen.BatchNorm` that the lineage code (PyTorch) fixes:

- The batch variance is E[(x − μ)²] (two passes over the batch), never E[x²] − E[x]²: in
  float32 the latter loses most digits on channels whose mean dwarfs their spread (a 39%
  error measured on the re-ID head's BN1d, where PyTorch erred 0.04%).
- The running variance is updated with the *unbiased* batch variance (× n/(n − 1)), as
  `torch.nn.BatchNorm*d` does, while the batch is normalised with the biased one. For the
  trunk's BNs n = B·T·H·W is large and the factor is 1 + O(1e-5); for the head's BN1d n is
  the batch (32), so the factor is 1.03 and reaches the post-BN test feature.

Variables are those of `flax.linen.BatchNorm` (`params`: scale, bias; `batch_stats`: mean,
var), so checkpoints and the ImageNet conversion are unchanged. Statistics are over every
axis but the last; under `jax.jit` with a batch sharded over devices that is the global
batch (a SyncBN).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

Array = jax.Array


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
        xf = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(xf, axis=axes)
            var = jnp.mean(jnp.square(xf - mean), axis=axes)
            # Kept by `ResNet3D(remat="convs")` rather than recomputed (identities otherwise).
            mean, var = checkpoint_name(mean, "bn_stats"), checkpoint_name(var, "bn_stats")
            if update_stats and not self.is_initializing():
                n = x.size // features
                unbiased = var * (n / max(n - 1, 1))
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1 - m) * mean
                ra_var.value = m * ra_var.value + (1 - m) * unbiased
        y = (xf - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
        return y.astype(self.dtype)
