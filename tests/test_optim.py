"""Optimizers and schedules against torch.optim (Adam, AdamW, StepLR, clipping)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reidjax import experiment
from reidjax.config.config_lib import base_config
from reidjax.training.optim import OptimSpec, build_optimizer, learning_rate_schedule

try:
    import torch
except ImportError:  # the tests marked `torch` are skipped (conftest.py)
    torch = None


def _run(name, clip, steps=12, steps_per_epoch=2):
    config = OptimSpec(
        name=name, lr=0.01, weight_decay=0.05, lr_decay_every_epochs=2, lr_decay_factor=0.5,
        grad_clip_norm=clip,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5,)).astype(np.float32)
    grads = rng.normal(size=(steps, 5)).astype(np.float32) * 3
    tx, _ = build_optimizer(config, steps_per_epoch, epochs=steps // steps_per_epoch)
    params = jnp.asarray(w0)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    w = torch.tensor(w0, requires_grad=True)
    if name == "sgd":
        opt = torch.optim.SGD([w], lr=0.01, momentum=0.9, weight_decay=0.05)
    else:
        opt_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        opt = opt_cls([w], lr=0.01, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)  # per epoch
    for i, g in enumerate(grads):
        w.grad = torch.tensor(g)
        if clip:
            torch.nn.utils.clip_grad_norm_([w], clip)
        opt.step()
        if (i + 1) % steps_per_epoch == 0:
            sched.step()
    return np.asarray(params), w.detach().numpy()


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("clip", [0.0, 1.0])
@pytest.mark.torch
def test_matches_torch_optimizers(name, clip):
    ours, ref = _run(name, clip)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_schedule_in_epochs_with_warmup():
    config = OptimSpec(lr=1.0, lr_decay_every_epochs=3, lr_decay_factor=0.1)
    schedule = learning_rate_schedule(config, steps_per_epoch=10, epochs=9)
    assert [float(schedule(s)) for s in (0, 29, 30, 59, 60, 89)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    config = dataclasses.replace(config, warmup_epochs=1)
    schedule = learning_rate_schedule(config, steps_per_epoch=10, epochs=9)
    assert float(schedule(0)) == pytest.approx(0.01) and float(schedule(10)) == pytest.approx(1)
    with pytest.raises(ValueError, match=r"valid: \['adam', 'adamw', 'sgd'\]"):
        build_optimizer(dataclasses.replace(config, name="lamb"), 10, 9)


def test_the_spec_holds_every_key_of_the_config_section():
    """`experiment.optim_spec` copies `config.optim` whole: a key added to the schema must
    be added to `OptimSpec` (or the set-up would drop it)."""
    config = base_config()
    spec = experiment.optim_spec(config)
    assert {f.name for f in dataclasses.fields(OptimSpec)} == set(config.optim.keys())
    assert dataclasses.asdict(spec) == dict(config.optim.items())
