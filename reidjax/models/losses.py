"""Re-ID losses: pure functions returning scalars, and the models' total objectives.

A model's total objective is a dict of named, already weighted terms plus `total`, so every
term is logged (STYLE.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from reidjax.errors import ConfigError

Array = jax.Array
DISTANCES = ("cosine", "euclidean")


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """`x / max(||x||, eps)` along `axis` (torch.nn.functional.normalize semantics).

    The clamp acts on the squared norm, so an all-zero row has a finite (zero) gradient
    instead of the NaN of differentiating sqrt at 0.
    """
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def cross_entropy(logits: Array, labels: Array, label_smoothing: float = 0.0) -> Array:
    """Mean softmax cross-entropy, optionally label-smoothed.

    With smoothing ε the target is (1 − ε)·one_hot + ε/K (torchreid's
    `CrossEntropyLabelSmooth`); ε = 0 is the plain CE of the STRF objective, Eq. (9).

    Args:
        logits: `[N, K]`.
        labels: `[N]` int in [0, K).
        label_smoothing: ε in [0, 1).

    Returns:
        Scalar float32.
    """
    logits = logits.astype(jnp.float32)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    k = logits.shape[-1]
    targets = jax.nn.one_hot(labels, k) * (1.0 - label_smoothing) + label_smoothing / k
    return -jnp.mean(jnp.sum(targets * log_p, axis=-1))


def pairwise_distance(x: Array, y: Array, distance: str = "cosine") -> Array:
    """Distance matrix `[N, M]` between rows of `x` `[N, D]` and `y` `[M, D]`.

    `cosine`: 1 − cos; `euclidean`: ‖x − y‖, with the square root's argument clamped at
    1e-12 so that identical rows have a finite gradient.
    """
    if distance not in DISTANCES:
        raise ConfigError(f"Unknown distance {distance!r}; valid: {list(DISTANCES)}")
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    if distance == "cosine":
        return 1.0 - l2_normalize(x) @ l2_normalize(y).T
    sq = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * x @ y.T
    return jnp.sqrt(jnp.maximum(sq, 1e-12))


def batch_hard_triplet(
    features: Array, labels: Array, margin: float = 0.3, distance: str = "cosine"
) -> Array:
    """Batch-hard triplet loss (Hermans et al.; STRF Eq. (9) uses the cosine distance).

    For each anchor, the farthest positive (same label, another sample) and the closest
    negative (another label): `mean(relu(d_ap − d_an + margin))` over the anchors that have
    both. Anchors without a positive or a negative are masked out, not NaN; a batch with no
    valid anchor gives 0.

    Args:
        features: `[N, D]`.
        labels: `[N]` int.
        margin: the triplet margin (0.3, lineage).
        distance: `cosine` or `euclidean`.

    Returns:
        Scalar float32.
    """
    dist = pairwise_distance(features, features, distance)
    n = dist.shape[0]
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(n, dtype=bool)
    negative = ~same
    # Distances are >= 0: a masked entry of 0 never wins the max, and one above every
    # distance never wins the min, so no ±inf enters the graph.
    ceiling = jax.lax.stop_gradient(jnp.max(dist)) + 1.0
    hardest_positive = jnp.max(jnp.where(positive, dist, 0.0), axis=1)
    hardest_negative = jnp.min(jnp.where(negative, dist, ceiling), axis=1)
    valid = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
    losses = jnp.where(valid, jax.nn.relu(hardest_positive - hardest_negative + margin), 0.0)
    return jnp.sum(losses) / jnp.maximum(jnp.sum(valid), 1)


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """The weights and choices of the objectives (the keys of `config.loss`; the model
    factory makes it: `reidjax.models.factory.loss_spec`)."""

    ce_weight: float = 1.0
    label_smoothing: float = 0.0
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3
    triplet_distance: str = "cosine"  # | euclidean
    triplet_feature: str = "bn_features"  # post-BN (lineage) | features (pre-BN)
    dsanet_lambda: float = 0.1  # DSANet, Eqs. (9)-(10)
    dsanet_lambda_cam: float = 0.1
    ic_reduction: str = "mean"  # L_ic over channels: mean | sum
    fwg_frame_ce: bool = True  # train FWG's pseudo-label classifier with its frame CE


def _check_triplet_feature(name: str) -> None:
    if name not in ("bn_features", "features"):
        raise ValueError(
            f"Unknown loss.triplet_feature {name!r}; valid: ['bn_features', 'features']"
        )


def reid_objective(
    outputs: dict[str, Array], labels: Array, loss_config: LossSpec
) -> dict[str, Array]:
    """CE + batch-hard triplet: the objective of the baseline and STRF networks (Eq. (9)).

    Args:
        outputs: the network's outputs (`logits`, and the triplet feature named by
            `loss_config.triplet_feature`: `bn_features` (post-BN, lineage) or `features`).
        labels: `[B]` identity labels.
        loss_config: the weights and choices (`config.loss`).

    Returns:
        `{"ce": w·CE, "triplet": w·L_tri, "total": sum}` (weights from the spec).
    """
    c = loss_config
    _check_triplet_feature(c.triplet_feature)
    terms = {
        "ce": c.ce_weight * cross_entropy(outputs["logits"], labels, c.label_smoothing),
        "triplet": c.triplet_weight
        * batch_hard_triplet(
            outputs[c.triplet_feature], labels, c.triplet_margin, c.triplet_distance
        ),
    }
    terms["total"] = sum(terms.values())
    return terms


# ----------------------------------------------------------------------------- DSANet


def disentangle_loss(f_id: Array, f_cam: Array) -> Array:
    """L_dis, DSANet Eq. (1): `mean_b max(cos(f_ID, f_cam), 0)`.

    Zero for orthogonal or opposite features: only similarity is penalised.
    """
    cos = jnp.sum(l2_normalize(f_id.astype(jnp.float32)) * l2_normalize(f_cam), axis=-1)
    return jnp.mean(jax.nn.relu(cos))


def left_right_loss(logits_left: Array, logits_right: Array, labels: Array) -> Array:
    """L_L/R, DSANet Eq. (5): per-frame CE of P_LR on the left and right halves.

    Args:
        logits_left, logits_right: `[B, T, N]` from the TLM's f_t/L and f_t/R.
        labels: `[B]`.

    Returns:
        mean over frames of CE(P(f_t/L)) + CE(P(f_t/R)).
    """
    t = logits_left.shape[1]
    frame_labels = jnp.repeat(labels, t)
    n = logits_left.shape[-1]
    return cross_entropy(logits_left.reshape(-1, n), frame_labels) + cross_entropy(
        logits_right.reshape(-1, n), frame_labels
    )


def per_frame_cross_entropy(frame_logits: Array, labels: Array) -> Array:
    """CE of every frame's logits `[B, T, N]` against its clip's label: `[B, T]`."""
    log_p = jax.nn.log_softmax(frame_logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_p, labels[:, None, None], axis=-1)[..., 0]


def frame_pseudo_labels(frame_logits: Array, labels: Array) -> Array:
    """FWG pseudo label w, DSANet Eq. (6): `softmax_i(max_j CE_j − CE_i)`, no gradient.

    Frames whose P_FW classification is easier (smaller CE) get more weight.

    Returns:
        `[B, T]`, each row sums to 1; wrapped in `stop_gradient`.
    """
    ce = per_frame_cross_entropy(frame_logits, labels)
    d = jnp.max(ce, axis=1, keepdims=True) - ce
    return jax.lax.stop_gradient(jax.nn.softmax(d, axis=1))


def frame_weight_loss(pseudo: Array, predicted: Array) -> Array:
    """L_w: mean squared error between the pseudo label w and the FWG prediction ŵ."""
    return jnp.mean(jnp.square(pseudo - predicted))


def intra_class_loss(features: Array, labels: Array, reduction: str = "mean") -> Array:
    """L_ic, DSANet Eq. (7): Σ_k mean_{f∈B_k} red_c (f − mean_{B_k} f)².

    Args:
        features: f_ID `[B, C]`.
        labels: `[B]`.
        reduction: over channels, `mean` (default; Eq. 7 leaves it implicit) or `sum`.

    Returns:
        The sum over the identities of the batch of their feature variance.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"Unknown L_ic reduction {reduction!r}; valid: ['mean', 'sum']")
    f = features.astype(jnp.float32)
    same = (labels[:, None] == labels[None, :]).astype(jnp.float32)
    count = jnp.sum(same, axis=1)  # |B_k| of each sample's identity
    centre = same @ f / count[:, None]
    sq = jnp.square(f - centre)
    per_sample = jnp.mean(sq, axis=1) if reduction == "mean" else jnp.sum(sq, axis=1)
    return jnp.sum(per_sample / count)


def dsanet_objective(
    outputs: dict[str, Array],
    labels: Array,
    cameras: Array,
    switches,
    loss_config: LossSpec,
) -> dict[str, Array]:
    """The DSANet total, Eqs. (9)–(10), as named weighted terms.

    L_ce = CE(P f_ID) + λ[CE(P f_aug) + L_L/R] + λ_cam L_cam;
    L = L_ce + L_tri + L_dis + L_ic + λ L_w. Switched-off components have no term.

    Args:
        outputs: `DSANet` outputs (training mode).
        labels: `[B]` identity labels; cameras: `[B]` 0-based camera ids.
        switches: the model's `DSANetConfig`.
        loss_config: the weights and choices (`dsanet_lambda`, `dsanet_lambda_cam`, triplet
            and CE settings, `ic_reduction`, `fwg_frame_ce`).

    Returns:
        `{"ce", "sao", "lr", "cam", "triplet", "dis", "ic", "w", ["fwg_ce"], "total"}` for
        the components switched on.
    """
    c = loss_config
    lam = c.dsanet_lambda
    _check_triplet_feature(c.triplet_feature)
    terms = {"ce": c.ce_weight * cross_entropy(outputs["logits"], labels, c.label_smoothing)}
    if switches.sao:
        terms["sao"] = lam * cross_entropy(outputs["logits_aug"], labels, c.label_smoothing)
    if switches.tlm and switches.loss_lr:
        terms["lr"] = lam * left_right_loss(
            outputs["lr_logits_left"], outputs["lr_logits_right"], labels
        )
    if switches.disentangle:
        terms["cam"] = c.dsanet_lambda_cam * cross_entropy(outputs["cam_logits"], cameras)
    terms["triplet"] = c.triplet_weight * batch_hard_triplet(
        outputs[c.triplet_feature], labels, c.triplet_margin, c.triplet_distance
    )
    if switches.disentangle:
        terms["dis"] = disentangle_loss(outputs["features"], outputs["f_cam"])
    if switches.loss_ic:
        terms["ic"] = intra_class_loss(outputs["features"], labels, c.ic_reduction)
    if switches.fwg and switches.loss_w:
        pseudo = frame_pseudo_labels(outputs["frame_logits"], labels)
        terms["w"] = lam * frame_weight_loss(pseudo, outputs["frame_weights"])
        if c.fwg_frame_ce:
            terms["fwg_ce"] = lam * jnp.mean(
                per_frame_cross_entropy(outputs["frame_logits"], labels)
            )
    terms["total"] = sum(terms.values())
    return terms
