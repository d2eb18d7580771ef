"""Re-ID losses: pure functions returning scalars, and the models' total objectives.

A model's total objective is a dict of named, already weighted terms plus `total`, so every
term is logged (STYLE.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from reidjax.models.heads import l2_normalize

Array = jax.Array
DISTANCES = ("cosine", "euclidean")


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
        raise ValueError(f"Unknown distance {distance!r}; valid: {list(DISTANCES)}")
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


def reid_objective(
    outputs: dict[str, Array], labels: Array, loss_config: ml_collections.ConfigDict
) -> dict[str, Array]:
    """CE + batch-hard triplet: the objective of the baseline and STRF networks (Eq. (9)).

    Args:
        outputs: the network's outputs (`logits`, and the triplet feature named by
            `loss_config.triplet_feature`: `bn_features` (post-BN, lineage) or `features`).
        labels: `[B]` identity labels.
        loss_config: `config.loss`.

    Returns:
        `{"ce": w·CE, "triplet": w·L_tri, "total": sum}` (weights from the config).
    """
    c = loss_config
    if c.triplet_feature not in ("bn_features", "features"):
        raise ValueError(
            f"Unknown loss.triplet_feature {c.triplet_feature!r}; valid: ['bn_features', "
            "'features']"
        )
    terms = {
        "ce": c.ce_weight * cross_entropy(outputs["logits"], labels, c.label_smoothing),
        "triplet": c.triplet_weight
        * batch_hard_triplet(
            outputs[c.triplet_feature], labels, c.triplet_margin, c.triplet_distance
        ),
    }
    terms["total"] = sum(terms.values())
    return terms
