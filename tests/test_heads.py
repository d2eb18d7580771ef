"""The re-ID head against a NumPy reference, and the baseline network's outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reidjax.config.config_lib import base_config
from reidjax.experiment import build_module
from reidjax.models.heads import ReIDHead
from reidjax.models.losses import l2_normalize


def _numpy_head(fmap, scale, bias, mean, var, kernel, cbias, eps=1e-5):
    b, t, h, w, c = fmap.shape
    frame = np.full((b, t, c), -np.inf)
    for i in range(b):
        for j in range(t):
            for y in range(h):
                for x in range(w):
                    frame[i, j] = np.maximum(frame[i, j], fmap[i, j, y, x])
    feat = frame.sum(axis=1) / t
    bn = (feat - mean) / np.sqrt(var + eps) * scale + bias
    return feat, bn, bn @ kernel + cbias


def test_head_matches_numpy_loops_in_eval_mode(rng):
    fmap = rng.normal(size=(3, 4, 5, 3, 16)).astype(np.float32)
    head = ReIDHead(num_classes=7)
    variables = head.init(jax.random.key(0), fmap)
    stats = {"mean": rng.normal(size=16).astype(np.float32), "var": rng.uniform(0.5, 2, 16)}
    variables = {
        "params": variables["params"],
        "batch_stats": {"bn": {k: jnp.asarray(v, jnp.float32) for k, v in stats.items()}},
    }
    out = head.apply(variables, fmap)
    p = variables["params"]
    feat, bn, logits = _numpy_head(
        fmap,
        np.asarray(p["bn"]["scale"]),
        np.asarray(p["bn"]["bias"]),
        stats["mean"],
        stats["var"],
        np.asarray(p["classifier"]["kernel"]),
        np.asarray(p["classifier"]["bias"]),
    )
    np.testing.assert_allclose(out["features"], feat, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["bn_features"], bn, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-6)


def test_head_train_mode_uses_batch_statistics(rng):
    fmap = rng.normal(size=(6, 2, 2, 2, 8)).astype(np.float32)
    head = ReIDHead(num_classes=3)
    variables = head.init(jax.random.key(0), fmap)
    out, updates = head.apply(variables, fmap, train=True, mutable=["batch_stats"])
    feat = np.asarray(out["features"])
    p = variables["params"]["bn"]
    ref = (feat - feat.mean(0)) / np.sqrt(feat.var(0) + 1e-5) * p["scale"] + p["bias"]
    np.testing.assert_allclose(out["bn_features"], ref, rtol=1e-4, atol=1e-5)
    # torch momentum 0.1 == Flax momentum 0.9: running = 0.9 * running + 0.1 * batch.
    np.testing.assert_allclose(updates["batch_stats"]["bn"]["mean"], 0.1 * feat.mean(0), 1e-5)


def test_head_initialisation_follows_lineage():
    head = ReIDHead(num_classes=500)
    params = head.init(jax.random.key(0), jnp.zeros((2, 1, 1, 1, 2048)))["params"]
    scale = np.asarray(params["bn"]["scale"])
    assert abs(scale.mean() - 1) < 0.003 and 0.017 < scale.std() < 0.023
    assert not np.asarray(params["bn"]["bias"]).any()
    kernel = np.asarray(params["classifier"]["kernel"])
    assert 0.0009 < kernel.std() < 0.0011 and not np.asarray(params["classifier"]["bias"]).any()


def test_feature_extractor_without_classifier():
    head = ReIDHead(num_classes=0)
    variables = head.init(jax.random.key(0), jnp.ones((1, 2, 2, 2, 4)))
    assert "classifier" not in variables["params"]
    assert set(head.apply(variables, jnp.ones((1, 2, 2, 2, 4)))) == {"features", "bn_features"}


def test_l2_normalize_matches_numpy_and_handles_zero(rng):
    x = rng.normal(size=(4, 9)).astype(np.float32)
    np.testing.assert_allclose(l2_normalize(x), x / np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    assert not np.isnan(np.asarray(l2_normalize(jnp.zeros((2, 3))))).any()


@pytest.mark.slow
def test_baseline_network_outputs():
    # The model and clips of test_resnet3d's bf16 test: the two share compiled programs.
    config = base_config()
    config.model.arch = "tiny"
    config.model.dtype = "float32"
    model = build_module(config)
    clips = jax.random.normal(jax.random.key(0), (2, 2, 32, 16, 3))
    variables = jax.jit(model.init)(jax.random.key(1), clips)
    out = jax.jit(model.apply)(variables, clips)
    # MARS (the base config's dataset) has 625 training identities.
    assert out["features"].shape == (2, 256) and out["logits"].shape == (2, 625)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)


def test_l2_normalize_gradient_is_finite_at_zero():
    g = jax.grad(lambda x: l2_normalize(x).sum())(jnp.zeros((2, 3)))
    assert np.all(np.isfinite(np.asarray(g)))
