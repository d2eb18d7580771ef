"""The device half of the training augmentation: flip and random erasing, applied inside
the jitted train step to the decoded uint8 clips.

The host draws each clip's flip and erasing box (`sampling.augment_params`, a pure function
of (seed, step, position)); this applies them. It runs on the device because the host's
flip of a 256×128 clip costs about as much as decoding one of its frames
(docs/benchmarks.md). `sampling.augment_clip` is the NumPy reference, equal byte for byte.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline.sampling import ERASE_FILL


def apply_augmentation(clips: jax.Array, flip: jax.Array, erase: jax.Array) -> jax.Array:
    """Flip and random erasing of uint8 clips `[B, T, H, W, 3]`: `flip` bool `[B]`, `erase`
    int32 `[B, 4]` (top, left, h, w; h = 0: none). Exact: it moves and fills bytes."""
    clips = jnp.where(flip[:, None, None, None, None], clips[:, :, :, ::-1], clips)
    height, width = clips.shape[2], clips.shape[3]
    y = jnp.arange(height)[None, :, None]
    x = jnp.arange(width)[None, None, :]
    top, left, h, w = (erase[:, i, None, None] for i in range(4))
    inside = (y >= top) & (y < top + h) & (x >= left) & (x < left + w)  # [B, H, W]
    fill = jnp.asarray(ERASE_FILL.astype(np.uint8))
    return jnp.where(inside[:, None, :, :, None], fill, clips)
