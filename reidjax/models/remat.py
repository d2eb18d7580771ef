"""What the backward pass of a trunk recomputes instead of keeping (`model.remat`).

Reverse-mode autodiff keeps, for the backward pass, every intermediate that a derivative
reads: around each BatchNorm the centred activation in float32 and the ReLU's mask, besides
each convolution's input. On TPU these dominate the HBM traffic of a step (the step is
bound by memory traffic, not FLOPs). `convs` keeps only what is costly to recompute, each
convolution's output and each BatchNorm's batch statistics, and recomputes the elementwise
work between them in the backward pass; `blocks` keeps only each block's input.
"""

from __future__ import annotations

import jax

from reidjax.errors import ConfigError

# What a trunk is built with; the config also takes `auto`, resolved once by the factory.
MODES = ("none", "convs", "blocks")
REMATS = ("auto", *MODES)


def remat_mode(name: str, backend: str | None = None) -> str:
    """A `model.remat` name resolved: `auto` is `convs` on GPU and TPU (on TPU the step is
    bound by memory traffic, which `convs` halves on a v5e) and `none` on CPU, where it
    gains nothing (`backend`: default JAX's).

    Raises:
        ConfigError: an unknown name, listing the valid ones.
    """
    if name not in REMATS:
        raise ConfigError(f"Unknown model.remat {name!r}; valid: {list(REMATS)}")
    if name == "auto":
        return "none" if (backend or jax.default_backend()) == "cpu" else "convs"
    return name


# `convs`: the backward pass keeps each convolution's output (`Conv3D`, named "conv") and
# each BatchNorm's batch statistics ("bn_stats") and recomputes everything between them.
KEEP_CONV_OUTPUTS = jax.checkpoint_policies.save_only_these_names("conv", "bn_stats")
