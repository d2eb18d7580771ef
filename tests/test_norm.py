"""BatchNorm with PyTorch's numerics: against torch.nn.BatchNorm1d/3d and a NumPy BN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reidjax.models.norm import BatchNorm

try:
    import torch
except ImportError:  # the tests marked `torch` are skipped (conftest.py)
    torch = None


def _run(x_steps, momentum=0.9):
    """Our BN in training mode over several batches: (outputs, final batch_stats, params)."""
    bn = BatchNorm(momentum=momentum)
    variables = bn.init(jax.random.key(0), x_steps[0])
    outputs = []
    for x in x_steps:
        y, updates = bn.apply(variables, x, mutable=["batch_stats"])
        variables = {**variables, **updates}
        outputs.append(np.asarray(y))
    return outputs, variables


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(32, 16), (2, 3, 4, 5, 6)])
def test_matches_torch_batchnorm_in_training_and_inference(shape):
    """Outputs in training mode, the running mean and (unbiased) running variance after
    three steps, and inference outputs equal torch's BatchNorm1d / BatchNorm3d."""
    rng = np.random.default_rng(0)
    steps = [(rng.normal(size=shape) * 3 + 5).astype(np.float32) for _ in range(3)]
    ours, variables = _run(steps)
    channels = shape[-1]
    ref = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm3d)(channels)
    ref.train()
    for x, y in zip(steps, ours, strict=True):
        t = torch.from_numpy(x if len(shape) == 2 else np.moveaxis(x, -1, 1))
        out = ref(t).detach().numpy()
        np.testing.assert_allclose(y, out if len(shape) == 2 else np.moveaxis(out, 1, -1),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    stats = variables["batch_stats"]
    np.testing.assert_allclose(stats["mean"], ref.running_mean.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats["var"], ref.running_var.numpy(), rtol=1e-6, atol=1e-6)
    ref.eval()
    x = steps[0]
    y = BatchNorm(use_running_average=True).apply(variables, x)
    t = torch.from_numpy(x if len(shape) == 2 else np.moveaxis(x, -1, 1))
    out = ref(t).detach().numpy()
    np.testing.assert_allclose(y, out if len(shape) == 2 else np.moveaxis(out, 1, -1),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_large_mean_channel_keeps_its_variance():
    """A channel whose mean dwarfs its spread (std 0.05 around 100): the two-pass variance
    is right to float32 rounding, where E[x²] - E[x]² loses it (the NumPy float64 BN is
    the reference)."""
    rng = np.random.default_rng(1)
    x = (100 + 0.05 * rng.normal(size=(32, 4))).astype(np.float32)
    (y,), variables = _run([x], momentum=0.0)
    x64 = x.astype(np.float64)
    var = x64.var(0)
    np.testing.assert_allclose(variables["batch_stats"]["var"], var * 32 / 31, rtol=1e-3)
    expected = (x64 - x64.mean(0)) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-3)
    fast = np.mean(np.square(x), 0) - np.square(np.mean(x, 0))  # float32, one pass
    assert np.max(np.abs(fast - var) / var) > 0.05  # what the one-pass formula would give


def test_update_stats_false_normalises_without_touching_the_running_statistics():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(8, 3)), jnp.float32)
    bn = BatchNorm()
    variables = bn.init(jax.random.key(0), x)
    y, updates = bn.apply(variables, x * 2 + 1, update_stats=False, mutable=["batch_stats"])
    np.testing.assert_array_equal(updates["batch_stats"]["mean"], variables["batch_stats"]["mean"])
    np.testing.assert_array_equal(updates["batch_stats"]["var"], variables["batch_stats"]["var"])
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)  # its own batch statistics


def _numpy_bn_grads(x, dy, scale, eps=1e-5):
    """The training-mode BN gradients in float64 by the textbook formulas (x: [N, C])."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    mean, var = x.mean(0), x.var(0)
    xhat = (x - mean) / np.sqrt(var + eps)
    dbias, dscale = dy.sum(0), (dy * xhat).sum(0)
    n = x.shape[0]
    dx = scale / np.sqrt(var + eps) * (dy - dbias / n - xhat * dscale / n)
    return dx, dscale, dbias


def _ours_grads(x, dy, scale, bias, dtype=jnp.float32):
    bn = BatchNorm(dtype=dtype)
    variables = bn.init(jax.random.key(0), x)
    params = {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}

    def f(x, params):
        y, _ = bn.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(y.astype(jnp.float32) * dy)

    dx, dp = jax.jit(jax.grad(f, argnums=(0, 1)))(x, params)
    return dx, dp["scale"], dp["bias"]


@pytest.mark.parametrize("shape", [(32, 16), (2, 3, 4, 5, 6)])
def test_training_gradients_equal_the_formula_in_float64(shape):
    """Training-mode gradients for x, γ and β against the textbook BN gradients in
    float64; channel means far from 0 as in the trunk."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=shape) * 3 + 5).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    scale, bias = rng.uniform(0.5, 2, shape[-1]), rng.normal(size=shape[-1])
    ours = _ours_grads(x, dy, scale.astype(np.float32), bias.astype(np.float32))
    c = shape[-1]
    ref = _numpy_bn_grads(x.reshape(-1, c), dy.reshape(-1, c), scale)
    for a, b in zip(ours, ref, strict=True):
        a = np.asarray(a, np.float64).reshape(b.shape)
        # float32 sums of n ≤ 360 terms: relative error ~ n·2⁻²⁴ ≈ 2e-5 of the largest term.
        np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(b).max(), rtol=0)


@pytest.mark.torch
def test_training_gradients_equal_torch():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(2, 3, 4, 5, 6)) * 3 + 5).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    ours = _ours_grads(x, dy, np.ones(6, np.float32), np.zeros(6, np.float32))
    ref = torch.nn.BatchNorm3d(6).train()
    t = torch.from_numpy(np.moveaxis(x, -1, 1)).requires_grad_()
    ref(t).backward(torch.from_numpy(np.moveaxis(dy, -1, 1)))
    expect = (np.moveaxis(t.grad.numpy(), 1, -1), ref.weight.grad.numpy(), ref.bias.grad.numpy())
    for a, b in zip(ours, expect, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, atol=1e-5 * np.abs(b).max(), rtol=0)
