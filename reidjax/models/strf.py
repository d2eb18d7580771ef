"""STRF: the Spatio-Temporal Representation Factorization unit (STRF paper §3).

Given `f` `[B, T, H, W, C]`, each factor (d, k) ∈ {(t, τ), (t, ς), (s, τ), (s, ς)} computes

    T_dk = G_dk(H_dk(f))                       Eq. (2): 1×1×1 conv C → C/16, then pooling
    C_dk = κ · T_dkᵀ T_dk            [HW, HW]   Eq. (3): T_dk as [(C/16)·T, HW], κ = 4
    M_dk = softmax over the summed index
    f̂_dk = f̂ M_dk                  [C·T, HW]   Eq. (1): out[:, j] = Σ_i f̂[:, i] M[i, j]

with temporal pooling G_t = pool(r, 1, 1) (Eq. 4) and spatial pooling G_s = pool(1, r, r)
(Eq. 6), stride 1 and size-preserving padding; r = r_τ for the dynamic/fine factors and
r_ς for the static/coarse ones (r = 1 is the identity). The two modules are
FFM(t) = f̂_tτ + f̂_tς (Eq. 5) and FFM(s) = f̂_sτ + f̂_sς (Eq. 7), and the output is
φ(FFM(t), FFM(s)) (Eq. 8): by default the cascade FFM(s)(FFM(t)(f)).

Choices where the paper is silent or ambiguous (all switches of `STRFConfig`):
- each position's (C/16)·T vector is L2-normalised before Eq. (3) (`l2_normalize`, the
  AP3D-style affinity whose κ = 4 the paper cites);
- cascade temporal → spatial (§4.2 text; the Fig. 4 caption reads the other way:
  `integration="spatial_first"`; `"parallel"` adds FFM(t)(f) + FFM(s)(f));
- a module whose two factors are both switched off is skipped (the identity in a cascade,
  absent from the parallel sum), which is how the Table 4 ablations are built;
- average pooling pads with zeros and counts them (torch's `count_include_pad=True`);
  max pooling pads with −∞.

The affinity costs B·(HW)² floats per factor, the softmax's own size (layer2 at 256×128:
512×512 per clip); nothing larger is formed: both products are batched matmuls.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reidjax.errors import ConfigError
from reidjax.models.conv import Conv3D
from reidjax.models.losses import l2_normalize

Array = jax.Array

FACTORS = ("t_tau", "t_sig", "s_tau", "s_sig")
POOLS = ("max", "avg")
INTEGRATIONS = ("temporal_first", "spatial_first", "parallel")
# Where a P3D block's STRF unit sits: on the input of its 3×1×1 temporal conv (the paper's
# choice) or of its 1×3×3 spatial conv (supplementary Fig. 2's alternative).
POSITIONS = ("temporal", "spatial")
STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclasses.dataclass(frozen=True)
class STRFConfig:
    """Settings of every STRF unit of a network (hashable: a Flax module attribute).

    Attributes:
        resolutions: (r_τ, r_ς), the pooling size of the dynamic/fine and static/coarse
            factors; odd, r = 1 is the identity. Paper default (1, 3).
        pools: pooling type per factor, in `FACTORS` order (t_tau, t_sig, s_tau, s_sig):
            `max` (default) or `avg`.
        factors: the factors switched on (Table 4 ablations).
        integration: φ of Eq. (8): `temporal_first`, `spatial_first` or `parallel`.
        l2_normalize: L2-normalise each position's vector before the affinity.
        kappa: the temperature κ of Eq. (3).
        reduction: channel reduction n of H_dk (C → C/n).
        stages: stages whose temporal blocks get an STRF unit (Table 5).
        fam: the Factorized Attention Mask block. Off (Fig. 6(a) "w/o FAM": "non-weighted
            multiplication of f(i) with itself"): every factor's mask is the softmax of
            κ·f̂ᵀf̂ of the unit's input itself, with no channel reduction H_dk and no
            pooling G_dk, so no static/dynamic or coarse/fine factor and no parameters.
        position: `temporal` (the unit on the input of the 3×1×1 conv, the paper's) or
            `spatial` (on the input of the 1×3×3 conv; supplementary Fig. 2).
    """

    resolutions: tuple[int, int] = (1, 3)
    pools: tuple[str, str, str, str] = ("max", "max", "max", "max")
    factors: tuple[str, ...] = FACTORS
    integration: str = "temporal_first"
    l2_normalize: bool = True
    kappa: float = 4.0
    reduction: int = 16
    stages: tuple[str, ...] = ("layer2", "layer3")
    fam: bool = True
    position: str = "temporal"

    def __post_init__(self):
        def fail(what, value, valid):
            raise ConfigError(f"Unknown STRF {what} {value!r}; valid: {list(valid)}")

        for r in self.resolutions:
            if r < 1 or r % 2 == 0:
                raise ConfigError(f"STRF resolutions must be odd and >= 1, got {self.resolutions}")
        if len(self.resolutions) != 2:
            raise ConfigError(f"STRF resolutions is (r_tau, r_sig), got {self.resolutions}")
        if len(self.pools) != len(FACTORS):
            raise ConfigError(f"STRF pools needs one entry per factor {FACTORS}, got {self.pools}")
        for p in self.pools:
            if p not in POOLS:
                fail("pool", p, POOLS)
        for f in self.factors:
            if f not in FACTORS:
                fail("factor", f, FACTORS)
        if self.integration not in INTEGRATIONS:
            fail("integration", self.integration, INTEGRATIONS)
        if self.position not in POSITIONS:
            fail("position", self.position, POSITIONS)
        for s in self.stages:
            if s not in STAGES:
                fail("stage", s, STAGES)
        if self.reduction < 1:
            raise ConfigError(f"STRF reduction must be >= 1, got {self.reduction}")


def pool_same(x: Array, window: tuple[int, int, int], kind: str) -> Array:
    """Stride-1 pooling of `[B, T, H, W, C]` that keeps the size (padding k // 2)."""
    if all(k == 1 for k in window):
        return x
    padding = tuple((k // 2, k // 2) for k in window)
    if kind == "max":
        return nn.max_pool(x, window, strides=(1, 1, 1), padding=padding)
    return nn.avg_pool(x, window, strides=(1, 1, 1), padding=padding, count_include_pad=True)


def _positions(x: Array) -> Array:
    """`[B, T, H, W, C]` -> `[B, H·W, T·C]`: one row per spatial position."""
    b, t, h, w, c = x.shape
    return x.transpose(0, 2, 3, 1, 4).reshape(b, h * w, t * c)


def _unpositions(y: Array, shape: tuple[int, ...]) -> Array:
    b, t, h, w, c = shape
    return y.reshape(b, h, w, t, c).transpose(0, 3, 1, 2, 4)


class STRF(nn.Module):
    """One STRF unit; output has the input's shape `[B, T, H, W, C]`.

    Attributes:
        config: `STRFConfig`.
        dtype: compute dtype of the convs and the output product (the affinity and its
            softmax are computed in float32).
    """

    config: STRFConfig = STRFConfig()
    dtype: Any = jnp.float32

    def factor_mask(self, x: Array, factor: str) -> Array:
        """M_dk of Eqs. (2)–(3): `[B, HW, HW]`, row j = softmax over i of C[j, i]."""
        cfg = self.config
        if not cfg.fam:  # the input's own self-similarity: no H_dk, no G_dk
            t = _positions(x).astype(jnp.float32)
            t = l2_normalize(t) if cfg.l2_normalize else t
            mask = jax.nn.softmax(cfg.kappa * jnp.einsum("bjc,bic->bji", t, t), axis=-1)
            self.sow("intermediates", f"mask_{factor}", mask)
            return mask
        d, k = factor.split("_")
        channels = x.shape[-1]
        if channels % cfg.reduction:
            raise ValueError(
                f"STRF input channels {channels} not divisible by reduction {cfg.reduction}"
            )
        h = Conv3D(
            channels // cfg.reduction,
            (1, 1, 1),
            kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
            dtype=self.dtype,
            name=f"h_{factor}",
        )(x)
        r = cfg.resolutions[0 if k == "tau" else 1]
        window = (r, 1, 1) if d == "t" else (1, r, r)
        g = pool_same(h, window, cfg.pools[FACTORS.index(factor)])
        t = _positions(g).astype(jnp.float32)  # [B, HW, (C/16)·T]
        if cfg.l2_normalize:
            t = l2_normalize(t)
        affinity = cfg.kappa * jnp.einsum("bjc,bic->bji", t, t)
        mask = jax.nn.softmax(affinity, axis=-1)
        # For visualisation: apply(..., mutable=["intermediates"]) returns every mask.
        self.sow("intermediates", f"mask_{factor}", mask)
        return mask

    def ffm(self, x: Array, d: str) -> Array | None:
        """FFM(d)(x) = Σ_k f̂_dk (Eqs. 5, 7); None when both factors of `d` are off."""
        factors = [f for f in FACTORS if f.startswith(d) and f in self.config.factors]
        if not factors:
            return None
        rows = _positions(x)  # f̂ᵀ: [B, HW, T·C]
        out = None
        for factor in factors:
            mask = self.factor_mask(x, factor).astype(rows.dtype)
            y = jnp.einsum("bji,bic->bjc", mask, rows)  # Eq. (1)
            out = y if out is None else out + y
        return _unpositions(out, x.shape)

    @nn.compact
    def __call__(self, f: Array) -> Array:
        """Applies φ(FFM(t), FFM(s)) (Eq. 8) to `f` `[B, T, H, W, C]`."""
        f = f.astype(self.dtype)
        if self.config.integration == "parallel":
            parts = [p for p in (self.ffm(f, "t"), self.ffm(f, "s")) if p is not None]
            return sum(parts[1:], parts[0]) if parts else f
        order = ("t", "s") if self.config.integration == "temporal_first" else ("s", "t")
        x = f
        for d in order:
            y = self.ffm(x, d)
            x = x if y is None else y
        return x
