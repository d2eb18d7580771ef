"""Inflated ResNet trunks: parameter counts, init equivalences, and PyTorch parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from reidjax.config.config_lib import base_config
from reidjax.experiment import build_module
from reidjax.models import VARIANTS, ImageNetResNet, ResNet3D
from reidjax.models.factory import dummy_clips
from reidjax.models.summary import count_params
from reidjax.pretrained import inflation, weights

try:
    import torch

    from bench.torch_resnet import TorchResNet, randomize_bn
except ImportError:  # the tests marked `torch` are skipped (conftest.py)
    torch = None


def _param_count(config):
    model = build_module(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy_clips(config)))
    return count_params(shapes["params"])


@pytest.mark.parametrize(
    "variant, trunk_bn, with_625",
    [
        ("c2d", 23_512_128, 24_792_753),
        ("i3d", 27_640_896, 28_921_521),
        ("p3da", 24_200_256, 25_480_881),
        ("p3db", 24_200_256, 25_480_881),
        ("p3dc", 24_200_256, 25_480_881),
    ],
)
def test_parameter_counts_match_spec(variant, trunk_bn, with_625):
    config = base_config()
    config.model.variant = variant
    config.model.num_classes = 625
    assert _param_count(config) == with_625
    # Without the classifier: trunk + BN1d (C2D 23.51M, I3D 27.64M, P3D 24.20M).
    assert with_625 - (2048 * 625 + 625) == trunk_bn
    assert round(trunk_bn / 1e6, 2) == {"c2d": 23.51, "i3d": 27.64}.get(variant, 24.20)


@pytest.mark.torch
def test_imagenet_resnet50_matches_torchvision_count():
    shapes = jax.eval_shape(
        lambda: ImageNetResNet().init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    )
    total = count_params(shapes["params"])
    assert total == 25_557_032  # torchvision.models.resnet50
    assert total - count_params(shapes["params"]["fc"]) == 23_508_032  # trunk without fc


def test_layer4_shape_last_stride_one():
    model = ResNet3D(variant="p3dc")
    x = jax.ShapeDtypeStruct((2, 4, 256, 128, 3), jnp.float32)
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x)
    assert out["layer4"].shape == (2, 4, 16, 8, 2048)
    assert out["layer3"].shape == (2, 4, 16, 8, 1024)


def _torch_2d(arch, last_stride, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TorchResNet(dims=2, arch=arch, last_stride=last_stride, num_classes=0).eval()
    randomize_bn(model, g)
    return model


def _trunk_variables(state_dict):
    """Converted 2D trunk variables (no fc) for a `ResNet3D` bound as a top-level module."""
    v = weights.torch_to_flax({k: t.numpy() for k, t in state_dict.items()})
    return {c: v[c]["backbone"] for c in ("params", "batch_stats")}


@pytest.mark.torch
def test_c2d_equals_2d_resnet50_per_frame():
    """Full-size C2D on a T-frame clip == torch's 2D ResNet-50 applied to every frame."""
    net = _torch_2d("resnet50", last_stride=1, seed=1)
    clip = np.random.default_rng(0).normal(size=(2, 3, 64, 32, 3)).astype(np.float32)
    with torch.no_grad():
        frames = torch.from_numpy(clip.reshape(6, 64, 32, 3)).permute(0, 3, 1, 2)
        ref = net(frames).permute(0, 2, 3, 1).numpy().reshape(2, 3, 4, 2, 2048)
    out = ResNet3D(variant="c2d").apply(_trunk_variables(net.state_dict()), clip)["layer4"]
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-4, rtol=1e-5)


def _inflated(variant, source, clip, arch, temporal_blocks=None):
    model = ResNet3D(arch=arch, variant=variant, temporal_blocks=temporal_blocks)
    init = model.init(jax.random.key(3), clip)
    variables, report = inflation.inflate(
        {k: {"backbone": v} for k, v in source.items()},
        {k: {"backbone": v} for k, v in init.items()},
    )
    return model, {k: v["backbone"] for k, v in variables.items()}, report


@pytest.mark.torch
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("train", [False, True])
def test_every_variant_at_init_computes_c2d_tiny(variant, train):
    source = _trunk_variables(_torch_2d("tiny", last_stride=1, seed=2).state_dict())
    clip = jax.random.normal(jax.random.key(0), (2, 4, 32, 16, 3))
    c2d, c2d_vars, _ = _inflated("c2d", source, clip, "tiny")
    model, variables, report = _inflated(variant, source, clip, "tiny")
    if variant in ("p3da", "p3db", "p3dc"):
        assert sorted(report.kept_init) == [
            "params/backbone/layer2_0/conv2_t/kernel",
            "params/backbone/layer3_0/conv2_t/kernel",
        ]
    if variant == "i3d":
        assert len(report.inflated) > 0 and report.kept_init == []
    kw = {"mutable": ["batch_stats"]} if train else {}
    ref = c2d.apply(c2d_vars, clip, train=train, **kw)
    out = model.apply(variables, clip, train=train, **kw)
    if train:
        (ref, ref_stats), (out, out_stats) = ref, out
        for a, b in zip(jax.tree.leaves(ref_stats), jax.tree.leaves(out_stats), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        np.testing.assert_allclose(out[name], ref[name], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_at_init_computes_c2d_full_size(variant):
    """The same on full-size ResNet-50 weights (small frames), eval-mode BN."""
    source = _trunk_variables(_torch_2d("resnet50", last_stride=1, seed=4).state_dict())
    clip = jax.random.normal(jax.random.key(0), (1, 3, 64, 32, 3))
    _, c2d_vars, _ = _inflated("c2d", source, clip, "resnet50")
    ref = ResNet3D(variant="c2d").apply(c2d_vars, clip)["layer4"]
    model, variables, _ = _inflated(variant, source, clip, "resnet50")
    out = model.apply(variables, clip)["layer4"]
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def _randomize_temporal(model, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("conv2_t.weight") or (p.dim() == 5 and p.shape[2] == 3):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.torch
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_torch_3d_reference(variant):
    """Non-trivial temporal weights: the Flax block wiring equals an independent torch one."""
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    net = TorchResNet(dims=3, variant=variant, arch="tiny", last_stride=1, num_classes=0)
    net = net.eval()
    randomize_bn(net, g)
    _randomize_temporal(net, g)
    clip = np.random.default_rng(1).normal(size=(2, 4, 32, 16, 3)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(clip).permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1).numpy()
    variables = _trunk_variables(net.state_dict())
    model = ResNet3D(arch="tiny", variant=variant)
    expected = jax.eval_shape(lambda: model.init(jax.random.key(0), clip))
    weights.check_structure(variables, expected, "torch reference")
    out = model.apply(variables, clip)["layer4"]
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-4)
    # The temporal convs really are active: the clip is not processed frame by frame.
    if variant != "c2d":
        frame0 = model.apply(variables, clip[:, :1])["layer4"]
        assert np.abs(np.asarray(frame0[:, 0]) - np.asarray(out[:, 0])).max() > 1e-3


def test_temporal_block_indices_configurable_and_validated():
    clip = jnp.zeros((1, 2, 32, 16, 3))
    model = ResNet3D(arch="tiny", variant="p3dc", temporal_blocks=((0,), (), (), ()))
    params = jax.eval_shape(model.init, jax.random.key(0), clip)["params"]
    params = traverse_util.flatten_dict(params)
    assert {k[0] for k in params if "conv2_t" in k} == {"layer1_0"}
    bad = ResNet3D(arch="tiny", variant="p3dc", temporal_blocks=((), (0, 2), (), ()))
    with pytest.raises(ValueError, match=r"layer2 has indices \[2\]"):
        jax.eval_shape(bad.init, jax.random.key(0), clip)


def test_unknown_variant_and_arch_list_valid_names():
    config = base_config()
    config.model.variant = "p3dd"
    with pytest.raises(ValueError, match=r"valid: .*p3dc"):
        build_module(config)
    config.model.variant = "c2d"
    config.model.arch = "resnet101"
    with pytest.raises(ValueError, match=r"valid: .*resnet50"):
        build_module(config)


@pytest.mark.slow
def test_bf16_compute_keeps_f32_params_and_tracks_f32():
    config = base_config()
    config.model.arch = "tiny"
    config.model.dtype = "bfloat16"
    model = build_module(config)
    clip = jax.random.normal(jax.random.key(0), (2, 2, 32, 16, 3))
    shapes = jax.eval_shape(model.init, jax.random.key(1), clip)
    assert {x.dtype for x in jax.tree.leaves(shapes)} == {jnp.dtype("float32")}
    config.model.dtype = "float32"
    f32 = build_module(config)
    # The same variables as the float32 model's (compiling the bf16 init takes 3x longer).
    variables = jax.jit(f32.init)(jax.random.key(1), clip)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), variables) == jax.tree.map(
        lambda a: (a.shape, a.dtype), shapes
    )
    out = jax.jit(model.apply)(variables, clip)
    assert out["logits"].dtype == jnp.float32
    ref = jax.jit(f32.apply)(variables, clip)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=0.05, atol=0.05)
