"""t-SNE (van der Maaten & Hinton, 2008), exact, in JAX: 2-D maps of a few thousand features.

    from reidjax.evaluation.tsne import tsne
    points = tsne(features, perplexity=30.0, seed=0)     # [N, D] -> [N, 2]

The standard algorithm: Gaussian affinities whose bandwidth per point is found by binary
search so that each row's entropy is log(perplexity), symmetrised P = (P + Pᵀ) / 2N;
Student-t affinities Q in the map; gradient descent on KL(P ‖ Q) with momentum 0.5 then
0.8, per-coordinate gains, early exaggeration ×12 for the first 250 iterations, learning
rate max(N / 12, 50). Every iteration is O(N²), one jitted `lax.scan`: a few seconds for
2,000 points on a CPU. Deterministic for a seed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def affinities(x: np.ndarray, perplexity: float = 30.0, tol: float = 1e-5) -> np.ndarray:
    """Conditional Gaussian affinities P(j|i) `[N, N]` (rows sum to 1, zero diagonal), each
    row's bandwidth found by binary search on its entropy (natural log) = log(perplexity)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if not 1 <= perplexity < n:
        raise ValueError(f"perplexity must be in [1, {n}) for {n} points, got {perplexity}")
    sq = np.sum(x * x, axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    off = ~np.eye(n, dtype=bool)
    # Distances shifted by each row's nearest (the same P, no underflow); diagonal 0, masked.
    d = np.where(off, d - np.min(np.where(off, d, np.inf), axis=1, keepdims=True), 0.0)
    d = d / max(float(np.median(d[off])), 1e-12)  # start the search near the right scale
    target = np.log(perplexity)
    beta = np.ones(n)  # 1 / (2σ²) per row, in units of the median distance
    lo, hi = np.zeros(n), np.full(n, np.inf)
    for _ in range(200):
        p = np.exp(-d * beta[:, None]) * off
        s = p.sum(axis=1)
        h = np.log(s) + beta * np.sum(d * p, axis=1) / s
        err = h - target
        if np.all(np.abs(err) < tol):
            break
        # Entropy too high: the kernel is too wide, raise beta.
        up = err > 0
        lo = np.where(up, beta, lo)
        hi = np.where(up, hi, beta)
        beta = np.where(np.isinf(hi), beta * 2, (lo + hi) / 2)
    return p / p.sum(axis=1, keepdims=True)


def _kl_step(carry, exaggeration, p, lr, momentum):
    y, update, gains = carry
    sq = jnp.sum(y * y, axis=1)
    num = 1.0 / (1.0 + sq[:, None] + sq[None, :] - 2 * y @ y.T)
    num = num * (1 - jnp.eye(len(y)))
    q = jnp.maximum(num / jnp.sum(num), 1e-12)
    pq = (exaggeration * p - q) * num
    grad = 4.0 * (jnp.sum(pq, axis=1)[:, None] * y - pq @ y)
    same = jnp.sign(grad) == jnp.sign(update)
    gains = jnp.maximum(jnp.where(same, gains * 0.8, gains + 0.2), 0.01)
    update = momentum * update - lr * gains * grad
    y = y + update
    y = y - jnp.mean(y, axis=0)
    kl = jnp.sum(p * jnp.log(jnp.maximum(p, 1e-12) / q))
    return (y, update, gains), kl


def tsne(
    x: np.ndarray,
    perplexity: float = 30.0,
    iterations: int = 1000,
    seed: int = 0,
    return_kl: bool = False,
):
    """A 2-D map `[N, 2]` of `x` `[N, D]` (and the KL divergence per iteration when
    `return_kl`).

    Raises:
        ValueError: fewer than 3 points, or a perplexity of N or more.
    """
    n = len(x)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    p = affinities(x, perplexity)
    p = (p + p.T) / (2 * n)
    p = jnp.asarray(np.maximum(p, 1e-12), jnp.float32)
    y0 = 1e-4 * jax.random.normal(jax.random.key(seed), (n, 2), jnp.float32)
    lr = max(n / 12.0, 50.0)
    exaggerate = min(250, iterations)
    schedule = (
        jnp.concatenate([jnp.full(exaggerate, 12.0), jnp.ones(iterations - exaggerate)]),
        jnp.where(jnp.arange(iterations) < exaggerate, 0.5, 0.8),
    )

    @jax.jit
    def run(p, y0, schedule):
        def body(carry, s):
            return _kl_step(carry, s[0], p, lr, s[1])

        carry = (y0, jnp.zeros_like(y0), jnp.ones_like(y0))
        (y, _, _), kl = jax.lax.scan(body, carry, schedule)
        return y, kl

    y, kl = run(p, y0, schedule)
    y = np.asarray(y, np.float64)
    return (y, np.asarray(kl)) if return_kl else y
