"""DSANet: sizes, each component against a NumPy reference, ablations, 8 devices == 1."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reidjax.config.config_lib import base_config
from reidjax.config.recipes import DSANET_SWITCHES, set_dsanet_ablation
from reidjax.errors import ConfigError
from reidjax.experiment import build_module
from reidjax.models import losses
from reidjax.models.dsanet import TLM, DSANetConfig
from reidjax.models.factory import dsanet_config, dummy_clips, loss_spec
from reidjax.models.summary import count_params


def dsanet(dataset="mars", arch="resnet50", **switches):
    config = base_config()
    config.model.name = "dsanet"
    config.dataset.name = dataset
    config.model.arch = arch
    if arch == "tiny":
        config.input.num_frames, config.input.height, config.input.width = 2, 32, 64
    for k, v in switches.items():
        config.model.dsanet[k] = v
    return config


def param_count(config):
    model = build_module(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy_clips(config)))
    return count_params(shapes["params"])


# ------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "dataset, paper, exact", [("mars", 29.5, 29_467_644), ("lsvid", 30.8, 30_819_984)]
)
def test_parameter_counts_match_paper(dataset, paper, exact):
    n = param_count(dsanet(dataset))
    assert n == exact
    assert abs(n / 1e6 - paper) <= 0.05


def test_dukev_count_and_baseline():
    # C2D trunk 23.51M + CEL 2.10M + three 702-way classifiers + 8-way camera classifier:
    # 29.945M. The paper states "30M" for Duke-V (§4.3), at that precision.
    n = param_count(dsanet("dukev"))
    assert n == 29_945_061 and round(n / 1e6) == 30
    baseline = base_config()
    baseline.dataset.name = "lsvid"
    assert abs(param_count(baseline) / 1e6 - 25.2) <= 0.05


@pytest.mark.parametrize(
    "row, paper",
    [
        ("baseline", 25.2),
        ("tlm_wo_lr", 27.4),
        ("tlm", 29.1),
        ("fwg_wo_w", 27.4),
        ("fwg", 29.1),
        ("tlm_fwg_wo_ic", 30.8),
        ("tlm_fwg", 30.8),
        ("full", 30.8),
    ],
)
def test_table2_rows_sizes(row, paper):
    config = dsanet("lsvid")
    set_dsanet_ablation(config, row)
    assert round(param_count(config) / 1e6, 1) == paper


# ------------------------------------------------------------------- components


def np_tlm(f_id, kernel):
    """Z_attn by loops: halves/middle, channel max+mean, 7×7 conv (zero pad 3), softmax."""
    b_len, t_len, h, w, _ = f_id.shape
    out = np.zeros((b_len, t_len, h, w))
    regions = {"L": (0, w // 2), "R": (w // 2, w), "M": (w // 4, w // 4 + w // 2)}
    for b in range(b_len):
        for t in range(t_len):
            for lo, hi in regions.values():
                z = f_id[b, t, :, lo:hi]
                maps = np.stack([z.max(-1), z.mean(-1)], -1)  # [h, w/2, 2]
                logits = np.zeros((h, hi - lo))
                for y in range(h):
                    for x in range(hi - lo):
                        for dy in range(-3, 4):
                            for dx in range(-3, 4):
                                yy, xx = y + dy, x + dx
                                if 0 <= yy < h and 0 <= xx < hi - lo:
                                    logits[y, x] += maps[yy, xx] @ kernel[dy + 3, dx + 3]
                e = np.exp(logits - logits.max())
                out[b, t, :, lo:hi] += e / e.sum()
    return out


def test_tlm_matches_numpy_and_each_half_map_sums_to_one(rng):
    f_id = rng.normal(size=(2, 3, 6, 8, 5)).astype(np.float32)
    tlm = TLM()
    variables = tlm.init(jax.random.key(0), f_id)
    kernel = np.asarray(variables["params"]["conv"]["kernel"])[0, :, :, :, 0]  # [7, 7, 2]
    z_attn = np.asarray(tlm.apply(variables, f_id))
    np.testing.assert_allclose(z_attn, np_tlm(f_id.astype(np.float64), kernel), atol=1e-6)
    # A_L + A_R + A_M: each sums to 1 over its frame's h×(w/2) positions.
    np.testing.assert_allclose(z_attn.sum(axis=(2, 3)), 3.0, rtol=1e-5)
    middle_free = np.concatenate([z_attn[:, :, :, :2], z_attn[:, :, :, 6:]], axis=3)
    middle = z_attn[:, :, :, 2:6]
    assert middle.sum() > middle_free.sum()  # A_M lands on columns [w/4, 3w/4)


def test_fwg_pseudo_label_is_softmax_of_negative_ce_without_gradient(rng):
    logits = jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)
    labels = jnp.array([1, 5, 0])
    w = np.asarray(losses.frame_pseudo_labels(logits, labels))
    for b in range(3):
        ce = []
        for t in range(4):
            z = np.asarray(logits[b, t], np.float64)
            ce.append(np.log(np.exp(z).sum()) - z[labels[b]])
        e = np.exp(-np.array(ce))
        np.testing.assert_allclose(w[b], e / e.sum(), rtol=1e-5)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(losses.frame_pseudo_labels(x, labels) * 7.0))(logits)
    assert not np.asarray(grad).any()


def test_disentangle_loss_cases():
    a = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    orthogonal = jnp.array([[0.0, 3.0], [5.0, 0.0], [1.0, -1.0]])
    assert float(losses.disentangle_loss(a, orthogonal)) == 0.0
    assert float(losses.disentangle_loss(a, -a)) == 0.0
    np.testing.assert_allclose(losses.disentangle_loss(a, 2 * a), 1.0, rtol=1e-6)
    mixed = jnp.array([[1.0, 1.0], [0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(losses.disentangle_loss(a, mixed), (0.5**0.5 + 0 + 0.5**0.5) / 3)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_intra_class_loss_equals_loop_variance(rng, reduction):
    f = rng.normal(size=(7, 5))
    labels = np.array([3, 3, 1, 3, 8, 1, 9])
    total = 0.0
    for k in np.unique(labels):
        members = f[labels == k]
        mean = members.sum(0) / len(members)
        acc = 0.0
        for m in members:
            dev = (m - mean) ** 2
            acc += dev.mean() if reduction == "mean" else dev.sum()
        total += acc / len(members)
    got = losses.intra_class_loss(jnp.asarray(f, jnp.float32), jnp.asarray(labels), reduction)
    np.testing.assert_allclose(got, total, rtol=1e-5)


def test_left_right_and_frame_weight_losses(rng):
    left = rng.normal(size=(2, 3, 4))
    right = rng.normal(size=(2, 3, 4))
    labels = np.array([2, 0])
    ref = 0.0
    for side in (left, right):
        acc = 0.0
        for b in range(2):
            for t in range(3):
                z = side[b, t]
                acc += np.log(np.exp(z).sum()) - z[labels[b]]
        ref += acc / 6
    got = losses.left_right_loss(
        jnp.asarray(left, jnp.float32), jnp.asarray(right, jnp.float32), jnp.asarray(labels)
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    w, w_hat = rng.dirichlet(np.ones(4), 3), rng.dirichlet(np.ones(4), 3)
    np.testing.assert_allclose(losses.frame_weight_loss(w, w_hat), np.mean((w - w_hat) ** 2))


@pytest.fixture(scope="module")
def tiny_model():
    config = dsanet(arch="tiny")
    config.model.num_classes = 5
    model = build_module(config)
    clips = jax.random.normal(jax.random.key(0), (8, 2, 32, 64, 3))
    variables = jax.jit(model.init)(jax.random.key(1), clips)
    return config, model, clips, variables


@functools.partial(jax.jit, static_argnums=0)
def _train_apply(model, variables, clips, key):
    """The training-mode forward pass, jitted once per model (eagerly, each primitive
    compiles on its own)."""
    return model.apply(variables, clips, train=True, mutable=["batch_stats"], rngs={"sao": key})[0]


def test_outputs_weights_and_sao(tiny_model):
    _, model, clips, variables = tiny_model
    out = _train_apply(model, variables, clips, jax.random.key(7))
    np.testing.assert_allclose(out["frame_weights"].sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        out["features"], jnp.einsum("bt,btc->bc", out["frame_weights"], out["frame_features"]),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    # SAO: f_aug_i = f_ID_i + f_cam_π(i) through the same BN and classifier, label y_i.
    perm = np.asarray(out["sao_permutation"])
    assert sorted(perm) == list(range(8))
    p = variables["params"]
    f_aug = out["features"] + out["f_cam"][perm]
    bn = (f_aug - f_aug.mean(0)) / jnp.sqrt(f_aug.var(0) + 1e-5) * p["bn"]["scale"] + p["bn"][
        "bias"
    ]
    logits = bn @ p["classifier"]["kernel"] + p["classifier"]["bias"]
    np.testing.assert_allclose(out["logits_aug"], logits, rtol=1e-4, atol=1e-5)
    # A different permutation per step: the key is fold_in(key, step).
    key = jax.random.key(0)
    perms = {
        tuple(np.asarray(_train_apply(model, variables, clips, jax.random.fold_in(key, s))[
            "sao_permutation"]))
        for s in range(4)
    }  # fmt: skip
    assert len(perms) == 4
    # Eval: only the test feature path, no SAO.
    test = model.apply(variables, clips)
    assert "logits_aug" not in test
    np.testing.assert_allclose(np.linalg.norm(test["embedding"], axis=1), 1.0, rtol=1e-5)
    # the test feature is f_ID before the BN ("we use f_ID only as the final representation")
    f_id = np.asarray(test["features"])
    np.testing.assert_allclose(
        test["embedding"], f_id / np.linalg.norm(f_id, axis=1, keepdims=True), rtol=1e-5, atol=1e-6
    )
    for name in ("tlm_attention", "fid_activation", "fcam_activation"):
        assert test[name].shape == (8, 2, 2, 4)
    # FWG over whole tracklets: the per-frame outputs pooled over one clip's frames with
    # weights exp(log-weight) are that clip's f_ID (ŵ = softmax(max s − s) ∝ exp(−s)).
    w = jax.nn.softmax(test["frame_log_weights"], axis=1)
    np.testing.assert_allclose(
        jnp.einsum("bt,btc->bc", w, test["frame_test_features"]), f_id, rtol=1e-5, atol=1e-6
    )
    assert "frame_log_weights" not in out  # training computes no per-frame test outputs


def test_frame_pooling_outputs_with_post_bn_features(tiny_model):
    """With `test_feature=bn_features` the per-frame features go through the same (affine,
    inference-mode) BN, so their FWG-weighted mean is the clip's post-BN f_ID."""
    _, model, clips, variables = tiny_model
    post = model.clone(switches=dataclasses.replace(model.switches, test_feature="bn_features"))
    out = post.apply(variables, clips)
    w = jax.nn.softmax(out["frame_log_weights"], axis=1)
    np.testing.assert_allclose(
        jnp.einsum("bt,btc->bc", w, out["frame_test_features"]), out["bn_features"],
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="fwg_scope 'all'"):
        DSANetConfig(fwg_scope="all")


def test_sao_does_not_reach_the_running_statistics(tiny_model):
    """f_aug is normalised with its own batch statistics (the NumPy BN above), but the BN's
    running statistics after a step are exactly those of the same step without SAO."""
    config, _, clips, variables = tiny_model
    with_sao = build_module(config)
    config = config.copy_and_resolve_references()
    config.model.dsanet.sao = False
    without_sao = build_module(config)
    stats = []
    for model in (with_sao, without_sao):
        _, updates = model.apply(
            variables, clips, train=True, mutable=["batch_stats"], rngs={"sao": jax.random.key(3)}
        )
        stats.append(updates["batch_stats"])
    for a, b in zip(jax.tree.leaves(stats[0]), jax.tree.leaves(stats[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    # and they moved: f_ID's statistics did reach them
    assert not np.allclose(stats[0]["bn"]["mean"], variables["batch_stats"]["bn"]["mean"])


@pytest.mark.slow
def test_fwg_pseudo_label_classifier_trains(tiny_model):
    """With the per-frame CE (the default), P_FW's weights move and the pseudo labels stop
    being uniform within a few Adam steps; without it P_FW's gradient is exactly zero."""
    config, model, clips, variables = tiny_model
    config = config.copy_and_resolve_references()  # the loss switch changes below
    labels, cams = jnp.repeat(jnp.arange(4), 2), jnp.tile(jnp.arange(2), 4)

    def loss(params, frame_ce):
        config.loss.fwg_frame_ce = frame_ce
        out, _ = model.apply(
            {**variables, "params": params}, clips, train=True, mutable=["batch_stats"],
            rngs={"sao": jax.random.key(2)},
        )  # fmt: skip
        terms = losses.dsanet_objective(out, labels, cams, dsanet_config(config), loss_spec(config))
        return terms["total"], out

    # Without the per-frame CE, the gradient of P_FW's weights alone (jitted: run eagerly,
    # every primitive of the forward and backward pass is compiled on its own).
    params = variables["params"]
    rest = {k: v for k, v in params.items() if k != "fwg_classifier"}
    grads = jax.jit(jax.grad(lambda fwg: loss({**rest, "fwg_classifier": fwg}, False)[0]))(
        params["fwg_classifier"]
    )
    assert not np.any(np.asarray(grads["kernel"]))
    # With it: Adam steps, each also giving the pseudo labels of the parameters it starts
    # from (one program; the sixth call's labels are those after five steps).
    tx = optax.adam(3.5e-4)

    def step(p, o):
        grads, out = jax.grad(lambda q: loss(q, True), has_aux=True)(p)
        updates, o = tx.update(grads, o, p)
        return (
            optax.apply_updates(p, updates),
            o,
            losses.frame_pseudo_labels(out["frame_logits"], labels),
        )

    step = jax.jit(step)
    opt_state = tx.init(params)
    for _ in range(6):
        before = params
        params, opt_state, pseudo = step(params, opt_state)
    initial, after = variables["params"]["fwg_classifier"], before["fwg_classifier"]
    assert float(jnp.max(jnp.abs(after["kernel"] - initial["kernel"]))) > 1e-4
    assert np.max(np.abs(np.asarray(pseudo) - 0.5)) > 1e-3  # T = 2 frames: uniform is 0.5 each


def test_sao_without_rng_is_a_clear_error(tiny_model):
    _, model, clips, variables = tiny_model
    with pytest.raises(ValueError, match="rngs=\\{'sao': key\\}"):
        model.apply(variables, clips, train=True, mutable=["batch_stats"])


# ------------------------------------------------------------------- ablations

REMOVES = {  # switch -> (switches forced off with it, params removed, loss terms removed)
    "disentangle": (("sao",), {"cel", "cam_classifier"}, {"cam", "dis", "sao"}),
    "tlm": (("loss_lr",), {"tlm", "lr_classifier"}, {"lr"}),
    "loss_lr": ((), {"lr_classifier"}, {"lr"}),
    "fwg": (("loss_w",), {"fwg_predictor", "fwg_classifier"}, {"w", "fwg_ce"}),
    "loss_w": ((), {"fwg_classifier"}, {"w", "fwg_ce"}),
    "loss_ic": ((), set(), {"ic"}),
    "sao": ((), set(), {"sao"}),
}


def _modules_and_terms(config):
    """Top-level parameter modules and loss-term names, from shapes alone (nothing runs)."""
    model = build_module(config)
    clips = jnp.ones((4, 2, 32, 64, 3))
    switches = dsanet_config(config)

    def build():
        variables = model.init(jax.random.key(0), clips)
        out = _train_apply(model, variables, clips, jax.random.key(1))
        labels, cams = jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 2, 3])
        return variables, losses.dsanet_objective(out, labels, cams, switches, loss_spec(config))

    variables, terms = jax.eval_shape(build)
    return set(variables["params"]), set(terms) - {"total"}


@pytest.mark.parametrize("switch", DSANET_SWITCHES)
def test_each_switch_removes_exactly_its_parameters_and_terms(switch):
    full_modules, full_terms = _modules_and_terms(dsanet(arch="tiny"))
    assert full_terms == {"ce", "sao", "lr", "cam", "triplet", "dis", "ic", "w", "fwg_ce"}
    also_off, params, terms = REMOVES[switch]
    config = dsanet(arch="tiny", **{switch: False, **dict.fromkeys(also_off, False)})
    modules, got_terms = _modules_and_terms(config)
    assert full_modules - modules == params and modules <= full_modules
    assert full_terms - got_terms == terms and got_terms <= full_terms


def test_switch_dependencies_are_checked():
    with pytest.raises(ValueError, match=r"loss_lr .* needs tlm"):
        DSANetConfig(tlm=False)
    with pytest.raises(ValueError, match="sao needs disentangle"):
        DSANetConfig(disentangle=False)
    config = dsanet()
    config.model.variant = "p3dc"
    with pytest.raises(ValueError, match="C2D backbone"):
        build_module(config)


@pytest.mark.slow
def test_objective_weights():
    config = dsanet("lsvid", arch="tiny")
    config.loss.dsanet_lambda_cam = 0.5
    config.loss.triplet_feature = "features"  # as in configs/dsanet_*.py
    config.model.num_classes = 3
    model = build_module(config)
    clips = jax.random.normal(jax.random.key(0), (4, 2, 32, 64, 3))
    variables = jax.jit(model.init)(jax.random.key(0), clips)
    out = _train_apply(model, variables, clips, jax.random.key(1))
    labels, cams = jnp.array([0, 0, 2, 2]), jnp.array([0, 3, 1, 14])
    terms = losses.dsanet_objective(out, labels, cams, dsanet_config(config), loss_spec(config))
    np.testing.assert_allclose(
        terms["cam"], 0.5 * losses.cross_entropy(out["cam_logits"], cams), rtol=1e-6
    )
    np.testing.assert_allclose(
        terms["sao"], 0.1 * losses.cross_entropy(out["logits_aug"], labels), rtol=1e-6
    )
    np.testing.assert_allclose(
        terms["triplet"], losses.batch_hard_triplet(out["features"], labels), rtol=1e-6
    )
    np.testing.assert_allclose(
        terms["total"], sum(v for k, v in terms.items() if k != "total"), rtol=1e-6
    )
    config.loss.fwg_frame_ce = True
    terms = losses.dsanet_objective(out, labels, cams, dsanet_config(config), loss_spec(config))
    assert "fwg_ce" in terms


# 8 devices == 1: tests/test_train.py::test_train_step_on_8_devices_equals_1_device runs
# the DSANet train step (every loss term, SGD at lr 0.1) on 8 devices and on 1.
