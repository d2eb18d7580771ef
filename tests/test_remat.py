"""`config.model.remat`: what the backward pass keeps. Every mode computes the same
parameters, outputs and gradients; `convs` keeps only convolution outputs, BatchNorm
statistics and the blocks' inputs."""

import contextlib
import io
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from reidjax import experiment
from reidjax.config.config_lib import load_config
from reidjax.data_setup import registry_meta
from reidjax.errors import ConfigError
from reidjax.models.factory import dummy_clips
from reidjax.models.remat import remat_mode
from reidjax.models.resnet3d import ResNet3D, get_arch


def _model(name: str, remat: str):
    config = load_config(name, "smoke")
    with config.unlocked():
        config.model.remat = remat
        config.model.dtype = "float32"
    return config, experiment.build(config, registry_meta(config))


@pytest.mark.slow
# STRF-P3D-C covers every block kind of the trunk DSANet and the baselines share.
@pytest.mark.parametrize("name", ["strf_mars"])
def test_remat_changes_no_parameter_output_or_gradient(name):
    config, plain = _model(name, "none")
    variables = jax.jit(plain.init)(jax.random.key(0), dummy_clips(config))  # eager: 3x slower
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

    g0, (out0, stats0) = grads(plain)
    for mode in ("convs", "blocks"):
        _, remat = _model(name, mode)
        # The same variables: checkpoints move between the modes.
        shapes = jax.eval_shape(remat.init, jax.random.key(0), dummy_clips(config))
        assert jax.tree.structure(shapes) == jax.tree.structure(variables)
        g1, (out1, stats1) = grads(remat)
        # Rematerialisation recomputes the forward with the same ops on the same inputs;
        # XLA compiles the programs separately and may fuse (and so round) the recomputed
        # float32 ops differently, by a few ulps. 1e-5 relative to each array's largest
        # entry is ~100 float32 ulps: far below any real difference (a dropped term or a
        # wrong input changes gradients at the 1e-2 level).
        leaves = jax.tree.leaves((out0, stats0, g0)), jax.tree.leaves((out1, stats1, g1))
        for a, b in zip(*leaves, strict=True):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            scale = max(np.abs(a).max(), 1e-12)
            assert np.abs(a - b).max() <= 1e-5 * scale, mode


def _residuals(mode: str) -> list[tuple[str, str]]:
    """(shape, what it is) of each array the tiny P3D-C trunk's backward pass keeps."""
    trunk = ResNet3D(arch="tiny", variant="p3dc", remat=mode, dtype=jnp.bfloat16)
    x = jnp.ones((2, 2, 32, 16, 3))
    variables = jax.jit(trunk.init)(jax.random.key(0), x)

    def loss(params, x):
        v = {"params": params, "batch_stats": variables["batch_stats"]}
        out, _ = trunk.apply(v, x, train=True, mutable=["batch_stats"])
        return out["layer4"].astype(jnp.float32).sum()

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_saved_residuals(loss, variables["params"], x)
    return [tuple(line.split(" ", 1)) for line in printed.getvalue().splitlines()]


def test_convs_keeps_conv_outputs_statistics_and_block_inputs_only():
    kept = {mode: _residuals(mode) for mode in ("none", "convs")}
    activations = {
        mode: [(s, what) for s, what in kept[mode] if not what.startswith("from the argument")]
        for mode in kept
    }
    other = [(s, w) for s, w in activations["convs"] if not re.match(r"named '(conv|bn_stats)'", w)]
    # The trunk's input and each block's input (the stem's output, then every block's
    # output but the last): the boundaries the recomputation starts from.
    assert len(other) == 1 + len(get_arch("tiny").stage_sizes), other
    # No float32 activation: in bfloat16 compute only the statistics are float32.
    assert all(s.startswith("bf16") for s, w in activations["convs"] if "bn_stats" not in w)
    # Without remat the backward keeps the float32 centred activations and the ReLU masks.
    assert any(s.startswith("f32[2,2,") for s, _ in activations["none"])
    assert any(s.startswith("bool[") for s, _ in activations["none"])
    assert len(activations["convs"]) < len(activations["none"]) / 2


def test_auto_is_convs_on_accelerators_and_none_on_cpu():
    assert remat_mode("auto", backend="cpu") == "none"
    assert remat_mode("auto", backend="tpu") == remat_mode("auto", backend="gpu") == "convs"
    assert remat_mode("blocks", backend="tpu") == "blocks"
    with pytest.raises(ConfigError, match=r"model.remat 'yes'.*'convs'"):
        remat_mode("yes")
    # Resolved once, by the factory: the trunk takes only a resolved mode.
    clip = jnp.zeros((1, 2, 32, 16, 3))
    with pytest.raises(ValueError, match=r"ResNet3D.remat='auto'.*resolve 'auto' first"):
        jax.eval_shape(ResNet3D(arch="tiny", remat="auto").init, jax.random.key(0), clip)
