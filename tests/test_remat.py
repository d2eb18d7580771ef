"""`config.model.remat`: the same parameters, outputs and gradients, with each trunk block
rematerialised in the backward pass."""

import jax
import numpy as np
import pytest

from reidjax import experiment
from reidjax.config_lib import load_config
from reidjax.data.open import registry_meta
from reidjax.models.factory import dummy_clips


def _model(name: str, remat: bool):
    config = load_config(name, "smoke")
    with config.unlocked():
        config.model.remat = remat
        config.model.dtype = "float32"
    return config, experiment.build(config, registry_meta(config))


@pytest.mark.slow
# STRF-P3D-C covers every block kind of the trunk DSANet and the baselines share.
@pytest.mark.parametrize("name", ["strf_mars"])
def test_remat_changes_no_parameter_output_or_gradient(name):
    config, plain = _model(name, False)
    _, remat = _model(name, True)
    variables = plain.init(jax.random.key(0), dummy_clips(config))
    # The remat module has the same variables: checkpoints move between the two.
    shapes = jax.eval_shape(remat.init, jax.random.key(0), dummy_clips(config))
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)
    rng = np.random.default_rng(0)
    b = 2 * config.train.clips_per_id
    clips = rng.integers(0, 256, (b, *dummy_clips(config).shape[1:]), dtype=np.uint8)
    batch = {
        "labels": np.repeat(np.arange(b // config.train.clips_per_id), config.train.clips_per_id),
        "cameras": np.arange(b) % 2,
    }

    def grads(model):
        def loss(params):
            v = {"params": params, "batch_stats": variables["batch_stats"]}
            out, stats = model.train_forward(v, clips, jax.random.key(1))
            return model.objective(out, batch)["total"], (out, stats)

        return jax.jit(jax.grad(loss, has_aux=True))(variables["params"])

    (g0, (out0, stats0)), (g1, (out1, stats1)) = grads(plain), grads(remat)
    # Rematerialisation recomputes the blocks' forward with the same ops on the same
    # inputs; XLA compiles the two programs separately and may fuse (and so round) the
    # recomputed float32 ops differently, by a few ulps. 1e-5 relative to each array's
    # largest entry is ~100 float32 ulps: far below any real difference (a dropped term or
    # a wrong input changes gradients at the 1e-2 level).
    leaves = jax.tree.leaves((out0, stats0, g0)), jax.tree.leaves((out1, stats1, g1))
    for a, b in zip(*leaves, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = max(np.abs(a).max(), 1e-12)
        assert np.abs(a - b).max() <= 1e-5 * scale
