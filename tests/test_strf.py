"""STRF unit against a NumPy reference of Eqs. (1)-(8), and STRF-aided networks."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from reidjax.config.config_lib import base_config
from reidjax.config.recipes import set_strf_stages
from reidjax.experiment import build_module
from reidjax.models.factory import dummy_clips, loss_spec
from reidjax.models.strf import FACTORS, STRF, STRFConfig

# ----------------------------------------------------------------- NumPy reference


def np_pool(x, window, kind):
    """Stride-1 'same' pooling of x [T, H, W, C] by explicit loops over output positions."""
    t_len, h_len, w_len, _ = x.shape
    rt, rh, rw = (k // 2 for k in window)
    out = np.empty_like(x)
    for t in range(t_len):
        for y in range(h_len):
            for z in range(w_len):
                vals = []
                for dt in range(-rt, rt + 1):
                    for dy in range(-rh, rh + 1):
                        for dz in range(-rw, rw + 1):
                            tt, yy, zz = t + dt, y + dy, z + dz
                            inside = 0 <= tt < t_len and 0 <= yy < h_len and 0 <= zz < w_len
                            if inside:
                                vals.append(x[tt, yy, zz])
                            elif kind == "avg":  # count_include_pad: zeros count
                                vals.append(np.zeros(x.shape[-1]))
                vals = np.stack(vals)
                out[t, y, z] = vals.max(0) if kind == "max" else vals.mean(0)
    return out


def np_factor(f, kernel, factor, cfg):
    """f̂_dk of Eq. (1) for one clip f [T, H, W, C] (C-major flattening, as in the paper)."""
    t_len, h_len, w_len, c = f.shape
    hw = h_len * w_len
    h = np.einsum("thwc,cd->thwd", f, kernel)  # H_dk: 1×1×1 conv, Eq. (2)
    d, k = factor.split("_")
    r = cfg.resolutions[0 if k == "tau" else 1]
    window = (r, 1, 1) if d == "t" else (1, r, r)  # Eqs. (4), (6)
    g = np_pool(h, window, cfg.pools[FACTORS.index(factor)])
    # T_dk: [(C/16)·T, HW], channel-major rows; column p = spatial position p.
    t_mat = np.zeros((g.shape[-1] * t_len, hw))
    f_hat = np.zeros((c * t_len, hw))
    for y in range(h_len):
        for z in range(w_len):
            p = y * w_len + z
            t_mat[:, p] = g[:, y, z, :].T.reshape(-1)
            f_hat[:, p] = f[:, y, z, :].T.reshape(-1)
    if cfg.l2_normalize:
        t_mat = t_mat / np.maximum(np.linalg.norm(t_mat, axis=0, keepdims=True), 1e-12)
    big_c = cfg.kappa * t_mat.T @ t_mat  # Eq. (3), [HW, HW]
    mask = np.zeros_like(big_c)  # softmax over the summed index i, per output column j
    for j in range(hw):
        e = np.exp(big_c[:, j] - big_c[:, j].max())
        mask[:, j] = e / e.sum()
    out_hat = f_hat @ mask  # Eq. (1)
    out = np.zeros_like(f)
    for y in range(h_len):
        for z in range(w_len):
            out[:, y, z, :] = out_hat[:, y * w_len + z].reshape(c, t_len).T
    return out


def np_strf(f, kernels, cfg):
    """Eqs. (5), (7), (8) over a batch f [B, T, H, W, C]."""

    def ffm(x, d):
        parts = [np_factor(x, kernels[fa], fa, cfg) for fa in cfg.factors if fa[0] == d]
        return sum(parts) if parts else None

    out = []
    for clip in f:
        if cfg.integration == "parallel":
            parts = [p for p in (ffm(clip, "t"), ffm(clip, "s")) if p is not None]
            out.append(sum(parts) if parts else clip)
            continue
        x = clip
        for d in ("t", "s") if cfg.integration == "temporal_first" else ("s", "t"):
            y = ffm(x, d)
            x = x if y is None else y
        out.append(x)
    return np.stack(out)


def run_unit(cfg, seed=0, shape=(2, 3, 4, 3, 32)):
    rng = np.random.default_rng(seed)
    # Without L2 normalisation the affinity grows with ‖T‖²: unit-variance inputs give
    # logits in the hundreds, where float32 rounding alone moves the softmax by ~1e-4.
    # Scaled inputs keep the logits in single digits, as for trained features.
    scale = 1.0 if cfg.l2_normalize else 0.1
    f = (scale * rng.normal(size=shape)).astype(np.float32)
    unit = STRF(cfg)
    variables = unit.init(jax.random.key(seed), f)
    params = variables.get("params", {})
    kernels = {fa: np.asarray(params[f"h_{fa}"]["kernel"][0, 0, 0]) for fa in cfg.factors}
    return np.asarray(unit.apply(variables, f)), np_strf(f.astype(np.float64), kernels, cfg)


SWITCHES = list(
    itertools.product(
        [(1, 3), (3, 5), (1, 1)],  # resolutions
        ["max", "avg"],  # pool type
        ["temporal_first", "spatial_first", "parallel"],
        [True, False],  # L2 normalisation
    )
)


@pytest.mark.parametrize("resolutions, pool, integration, l2", SWITCHES)
def test_unit_matches_numpy_reference(resolutions, pool, integration, l2):
    cfg = STRFConfig(
        resolutions=resolutions, pools=(pool,) * 4, integration=integration, l2_normalize=l2
    )
    out, ref = run_unit(cfg)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "factors",
    [
        ("s_tau",),
        ("s_sig",),
        ("t_tau",),
        ("t_sig",),
        ("s_tau", "s_sig"),
        ("t_tau", "t_sig"),
        ("s_tau", "t_tau"),
        ("s_tau", "t_sig"),
        ("s_sig", "t_tau", "t_sig"),
        (),
    ],
)
@pytest.mark.parametrize("integration", ["temporal_first", "parallel"])
def test_factor_ablations_match_reference(factors, integration):
    """The Table 4 rows: only the switched-on factors have weights and contribute."""
    cfg = STRFConfig(factors=factors, integration=integration, pools=("max", "avg", "avg", "max"))
    out, ref = run_unit(cfg, seed=1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    params = STRF(cfg).init(jax.random.key(0), jnp.zeros((1, 2, 3, 3, 32))).get("params", {})
    assert sorted(params) == sorted(f"h_{f}" for f in factors)


def test_mask_rows_are_convex_combinations():
    unit = STRF(STRFConfig())
    f = jax.random.normal(jax.random.key(0), (2, 4, 5, 3, 32))
    variables = unit.init(jax.random.key(1), f)
    _, state = unit.apply(variables, f, mutable=["intermediates"])
    masks = state["intermediates"]
    assert sorted(masks) == [f"mask_{fa}" for fa in sorted(FACTORS)]
    (mask,) = masks["mask_s_sig"]
    assert mask.shape == (2, 15, 15)
    np.testing.assert_allclose(mask.sum(-1), 1.0, rtol=1e-6)
    assert float(mask.min()) >= 0


def test_config_validation_lists_valid_values():
    with pytest.raises(ValueError, match="odd"):
        STRFConfig(resolutions=(1, 2))
    with pytest.raises(ValueError, match=r"valid: \['max', 'avg'\]"):
        STRFConfig(pools=("max", "min", "max", "max"))
    with pytest.raises(ValueError, match=r"valid: .*t_tau"):
        STRFConfig(factors=("t_fast",))
    with pytest.raises(ValueError, match=r"valid: .*parallel"):
        STRFConfig(integration="serial")


# ----------------------------------------------------------------- STRF-aided networks


def strf_config(variant="p3dc", arch="resnet50", num_classes=625):
    config = base_config()
    config.model.name = "strf"
    config.model.variant = variant
    config.model.arch = arch
    config.model.num_classes = num_classes
    if arch == "tiny":
        config.input.num_frames, config.input.height, config.input.width = 4, 32, 16
    return config


def count(config):
    model = build_module(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy_clips(config)))
    return sum(x.size for x in jax.tree.leaves(shapes["params"]))


def test_parameter_counts_match_paper():
    p3dc, i3d = count(strf_config("p3dc")), count(strf_config("i3d"))
    assert p3dc == 25_480_881 + 57_344
    assert i3d == 28_921_521 + 57_344
    # Table 2 truncates to two decimals: 25.53M and 28.97M.
    assert (p3dc // 10_000, i3d // 10_000) == (2553, 2897)


def test_stage_selection_adds_temporal_blocks_and_units():
    config = strf_config()
    set_strf_stages(config, "1+4")
    model = build_module(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy_clips(config)))
    flat = traverse_util.flatten_dict(shapes["params"])
    units = sorted({k[1] for k in flat if "strf" in k})
    assert units == ["layer1_0", "layer1_2", "layer4_0", "layer4_2"]
    temporal = sorted({k[1] for k in flat if "conv2_t" in k})
    assert temporal == [
        "layer1_0", "layer1_2", "layer2_0", "layer2_2", "layer3_0", "layer3_2", "layer3_4",
        "layer4_0", "layer4_2",
    ]  # fmt: skip


def test_strf_on_c2d_or_stage_without_temporal_block_fails():
    config = strf_config("c2d")
    with pytest.raises(ValueError, match="STRF needs temporal blocks"):
        count(config)
    config = strf_config()
    config.model.strf.stages = ("layer1",)
    with pytest.raises(ValueError, match="layer1 has no temporal block"):
        count(config)


def _tiny(variant, name):
    config = strf_config(variant, "tiny", num_classes=7)
    config.model.name = name
    return config, build_module(config)


@pytest.mark.slow
def test_strf_p3dc_at_init_equals_p3dc():
    """T is zero-initialised, so STRF on its input cannot change the output at init."""
    _, strf_model = _tiny("p3dc", "strf")
    _, p3dc = _tiny("p3dc", "baseline")
    clips = jax.random.normal(jax.random.key(0), (2, 4, 32, 16, 3))
    variables = jax.jit(strf_model.init)(jax.random.key(1), clips)
    flat = traverse_util.flatten_dict(variables)
    base = traverse_util.unflatten_dict({k: v for k, v in flat.items() if "strf" not in k})
    for train in (False, True):
        kw = {"mutable": ["batch_stats"]} if train else {}
        out = jax.jit(partial(strf_model.apply, train=train, **kw))(variables, clips)
        ref = jax.jit(partial(p3dc.apply, train=train, **kw))(base, clips)
        out, ref = (out[0], ref[0]) if train else (out, ref)
        np.testing.assert_allclose(out["bn_features"], ref["bn_features"], atol=1e-5)
        np.testing.assert_allclose(out["logits"], ref["logits"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["i3d", "p3da", "p3db", "p3dc"])
def test_gradients_reach_every_strf_parameter_after_one_step(variant):
    from reidjax.models.losses import reid_objective

    config, model = _tiny(variant, "strf")
    clips = jax.random.normal(jax.random.key(0), (8, 4, 32, 16, 3))
    labels = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
    variables = jax.jit(model.init)(jax.random.key(1), clips)

    def loss(params, batch_stats):
        out, _ = model.apply(
            {"params": params, "batch_stats": batch_stats}, clips, train=True,
            mutable=["batch_stats"],
        )  # fmt: skip
        return reid_objective(out, labels, loss_spec(config))["total"]

    grad_fn = jax.jit(jax.grad(loss))
    params = variables["params"]
    # One SGD step first: for P3D the zero-initialised T blocks the gradient to STRF at
    # step 0; after it, T is non-zero and every STRF weight receives a gradient.
    grads = grad_fn(params, variables["batch_stats"])
    params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    grads = traverse_util.flatten_dict(grad_fn(params, variables["batch_stats"]))
    strf_grads = {k: v for k, v in grads.items() if "strf" in k}
    assert len(strf_grads) == 2 * 4  # layer2_0 and layer3_0 of the tiny arch, 4 factors
    for key, g in strf_grads.items():
        assert np.all(np.isfinite(g)), key
        assert float(jnp.abs(g).max()) > 0, key


def test_forward_compiles_once_across_calls():
    _, model = _tiny("p3dc", "strf")
    clips = jax.random.normal(jax.random.key(0), (2, 4, 32, 16, 3))
    variables = jax.jit(model.init)(jax.random.key(1), clips)
    forward = jax.jit(lambda v, x: model.apply(v, x)["embedding"])
    for seed in range(3):
        forward(variables, jax.random.normal(jax.random.key(seed), clips.shape))
    assert forward._cache_size() == 1


@pytest.mark.parametrize("integration", ["temporal_first", "spatial_first", "parallel"])
@pytest.mark.parametrize("l2", [True, False])
def test_no_fam_is_the_input_weighted_by_itself(integration, l2):
    """`fam=False` (Fig. 6(a)): each factor's mask is the softmax of κ·f̂ᵀf̂ of the unit's own
    input: the NumPy reference with H_dk the identity and no pooling; no parameters."""
    import dataclasses

    cfg = STRFConfig(fam=False, integration=integration, l2_normalize=l2)
    rng = np.random.default_rng(3)
    f = ((1.0 if l2 else 0.1) * rng.normal(size=(2, 3, 4, 3, 32))).astype(np.float32)
    unit = STRF(cfg)
    variables = unit.init(jax.random.key(0), f)
    assert not variables.get("params")
    identity = {fa: np.eye(32) for fa in FACTORS}
    ref = np_strf(f.astype(np.float64), identity, dataclasses.replace(cfg, resolutions=(1, 1)))
    np.testing.assert_allclose(unit.apply(variables, f), ref, rtol=1e-4, atol=1e-4)


def test_no_fam_and_position_counts():
    """Without FAM the STRF-P3D-C network is the P3D-C baseline's size (the H_dk convs were
    all of STRF's parameters); the position moves the unit, not its size."""
    config = strf_config("p3dc")
    config.model.strf.fam = False
    assert count(config) == 25_480_881
    config = strf_config("p3dc")
    config.model.strf.position = "spatial"
    assert count(config) == 25_480_881 + 57_344


@pytest.mark.slow
def test_position_spatial_feeds_the_spatial_conv():
    """In the strided layer2 block of the tiny trunk (8×4 in, 4×2 out) the unit sees the
    conv2 input (32 positions) at `position="spatial"` and the spatial conv's output (8) at
    the paper's `temporal`; i3d has one conv, so both positions are the same network."""
    clips = jax.random.normal(jax.random.key(0), (1, 4, 32, 16, 3))
    sizes = {}
    for position in ("temporal", "spatial"):  # shapes only: nothing to compile
        config = strf_config("p3dc", "tiny", num_classes=7)
        config.model.strf.position = position
        model = build_module(config)
        variables = jax.eval_shape(model.init, jax.random.key(1), clips)
        _, state = jax.eval_shape(
            lambda v, m=model: m.apply(v, clips, mutable=["intermediates"]), variables
        )
        flat = traverse_util.flatten_dict(state["intermediates"])
        sizes[position] = {k[1]: v[0].shape[-1] for k, v in flat.items() if k[-1] == "mask_t_tau"}
    assert sizes["temporal"]["layer2_0"] == 8 and sizes["spatial"]["layer2_0"] == 32
    outs = []
    for position in ("temporal", "spatial"):
        config = strf_config("i3d", "tiny", num_classes=7)
        config.model.strf.position = position
        model = build_module(config)
        outs.append(jax.jit(model.apply)(jax.jit(model.init)(jax.random.key(1), clips), clips))
    np.testing.assert_array_equal(outs[0]["bn_features"], outs[1]["bn_features"])
