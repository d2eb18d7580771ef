"""Losses against NumPy loop references, and finite gradients on degenerate batches."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reidjax.config.config_lib import base_config
from reidjax.models.factory import loss_spec
from reidjax.models.losses import (
    LossSpec,
    batch_hard_triplet,
    cross_entropy,
    pairwise_distance,
    reid_objective,
)


def np_cross_entropy(logits, labels, eps):
    total = 0.0
    n, k = logits.shape
    for i in range(n):
        m = logits[i].max()
        log_z = m + np.log(np.sum(np.exp(logits[i] - m)))
        for c in range(k):
            target = (1 - eps) * (c == labels[i]) + eps / k
            total -= target * (logits[i, c] - log_z)
    return total / n


def np_distance(a, b, kind):
    if kind == "cosine":
        return 1 - np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return np.sqrt(np.sum((a - b) ** 2))


def np_triplet(x, labels, margin, kind):
    losses = []
    n = len(x)
    for i in range(n):
        pos = [np_distance(x[i], x[j], kind) for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [np_distance(x[i], x[j], kind) for j in range(n) if labels[j] != labels[i]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return np.mean(losses) if losses else 0.0


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cross_entropy_matches_loop(rng, eps):
    logits = rng.normal(size=(6, 9)) * 3
    labels = rng.integers(0, 9, 6)
    got = cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(labels), eps)
    np.testing.assert_allclose(got, np_cross_entropy(logits, labels, eps), rtol=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "euclidean"])
@pytest.mark.parametrize("margin", [0.3, 1.0])
def test_triplet_matches_loop(rng, kind, margin):
    x = rng.normal(size=(12, 16))
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])  # id 3 has no positive
    got = batch_hard_triplet(jnp.asarray(x, jnp.float32), jnp.asarray(labels), margin, kind)
    np.testing.assert_allclose(got, np_triplet(x, labels, margin, kind), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["cosine", "euclidean"])
def test_pairwise_distance_matches_loop(rng, kind):
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(3, 5))
    ref = np.array([[np_distance(u, v, kind) for v in b] for u in a])
    got = pairwise_distance(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), kind)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "euclidean"])
def test_degenerate_batches_give_finite_gradients(rng, kind):
    x = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
    grad = jax.grad(batch_hard_triplet)
    # All one identity: no negatives, every anchor masked, loss 0.
    one_id = jnp.zeros(8, jnp.int32)
    assert float(batch_hard_triplet(x, one_id, 0.3, kind)) == 0.0
    assert np.all(np.isfinite(grad(x, one_id, 0.3, kind)))
    # All different identities: no positives.
    all_diff = jnp.arange(8)
    assert float(batch_hard_triplet(x, all_diff, 0.3, kind)) == 0.0
    assert np.all(np.isfinite(grad(x, all_diff, 0.3, kind)))
    # Duplicate features (zero distances) and an all-zero feature.
    dup = jnp.concatenate([x[:4], x[:4]]).at[0].set(0.0)
    labels = jnp.array([0, 1, 0, 1, 0, 1, 0, 1])
    value = batch_hard_triplet(dup, labels, 0.3, kind)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(grad(dup, labels, 0.3, kind)))
    logits = jnp.zeros((8, 5))
    g = jax.grad(cross_entropy)(logits, labels, 0.1)
    assert np.all(np.isfinite(g))


def test_reid_objective_terms_and_weights(rng):
    config = loss_spec(base_config())
    assert config == LossSpec()  # the spec's defaults are the schema's
    outputs = {
        "logits": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32),
        "bn_features": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
        "features": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
    }
    labels = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
    terms = reid_objective(outputs, labels, config)
    assert set(terms) == {"ce", "triplet", "total"}
    np.testing.assert_allclose(terms["total"], terms["ce"] + terms["triplet"], rtol=1e-6)
    np.testing.assert_allclose(
        terms["triplet"], batch_hard_triplet(outputs["bn_features"], labels), rtol=1e-6
    )
    config = dataclasses.replace(config, triplet_weight=0.5, triplet_feature="features")
    halved = reid_objective(outputs, labels, config)
    np.testing.assert_allclose(
        halved["triplet"], 0.5 * batch_hard_triplet(outputs["features"], labels), rtol=1e-6
    )
    config = dataclasses.replace(config, triplet_feature="embedding")
    with pytest.raises(ValueError, match="valid: \\['bn_features', 'features'\\]"):
        reid_objective(outputs, labels, config)
    with pytest.raises(ValueError, match="valid: \\['cosine', 'euclidean'\\]"):
        pairwise_distance(outputs["features"], outputs["features"], "manhattan")
