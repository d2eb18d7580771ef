"""t-SNE: the perplexity search, and a map that keeps clusters apart."""

import numpy as np
import pytest

from reidjax.evaluation.tsne import affinities, tsne


def test_affinity_rows_have_the_asked_perplexity(rng):
    x = rng.normal(size=(60, 5))
    for perplexity in (5.0, 20.0):
        p = affinities(x, perplexity)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
        assert np.all(np.diag(p) == 0)
        entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
        np.testing.assert_allclose(np.exp(entropy), perplexity, rtol=1e-4)
        # Nearer points get more: the row's order follows the distances.
        d = np.linalg.norm(x[0] - x[1:], axis=1)
        assert np.all(np.diff(p[0, 1:][np.argsort(d)]) <= 1e-15)
    with pytest.raises(ValueError, match="perplexity"):
        affinities(x, 60.0)


def test_clusters_stay_apart_and_kl_falls(rng):
    """Five well-separated Gaussian clusters in 50-D: every point's 5 nearest map neighbours
    are of its cluster; the KL divergence falls after the exaggeration phase; a seed
    reproduces the map exactly."""
    centres = rng.normal(size=(5, 50)) * 10
    labels = np.repeat(np.arange(5), 40)
    x = centres[labels] + rng.normal(size=(200, 50))
    y, kl = tsne(x, perplexity=20.0, iterations=600, seed=1, return_kl=True)
    assert y.shape == (200, 2) and np.all(np.isfinite(y))
    d = np.linalg.norm(y[:, None] - y[None], axis=2)
    np.fill_diagonal(d, np.inf)
    neighbours = np.argsort(d, axis=1)[:, :5]
    assert np.mean(labels[neighbours] == labels[:, None]) == 1.0
    assert kl[-1] < kl[300] and kl[-1] < 1.0
    np.testing.assert_array_equal(y, tsne(x, perplexity=20.0, iterations=600, seed=1))
    with pytest.raises(ValueError, match="at least 3"):
        tsne(x[:2])
