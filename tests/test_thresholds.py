"""Operating thresholds against brute force over every cross-camera pair."""

import numpy as np
import pytest

from reidjax.evaluation import thresholds


def _pairs(rng, metric):
    """Features of 40 queries × 120 gallery tracklets of 30 identities over 3 cameras, and
    the brute-force (positive, negative) distances of the cross-camera pairs."""
    centres = rng.normal(size=(30, 16))
    q_pids, g_pids = rng.integers(0, 30, 40), rng.integers(0, 30, 120)
    g_pids[:5] = -1  # junk: left out
    qf = centres[q_pids] + rng.normal(size=(40, 16)) * 0.8
    gf = centres[np.maximum(g_pids, 0)] + rng.normal(size=(120, 16)) * 0.8
    qf /= np.linalg.norm(qf, axis=1, keepdims=True)
    gf /= np.linalg.norm(gf, axis=1, keepdims=True)
    q_cams, g_cams = rng.integers(0, 3, 40), rng.integers(0, 3, 120)
    d = 1 - qf @ gf.T if metric == "cosine" else np.linalg.norm(qf[:, None] - gf[None], axis=2)
    valid = (q_cams[:, None] != g_cams[None]) & (q_pids[:, None] >= 0) & (g_pids[None] >= 0)
    same = q_pids[:, None] == g_pids[None]
    args = (qf, gf, q_pids, g_pids, q_cams, g_cams)
    return args, d[valid & same], d[valid & ~same]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_thresholds_equal_brute_force(rng, metric):
    args, pos, neg = _pairs(rng, metric)
    out = thresholds.operating_points(*args, metric=metric)
    from reidjax.evaluation import metrics  # the evaluator hands over the matrix it already made

    given = metrics.pairwise_distances(args[0], args[1], metric)
    assert thresholds.operating_points(*args, metric=metric, distances=given) == out
    assert (out["positive_pairs"], out["negative_pairs"]) == (len(pos), len(neg))
    width = thresholds.RANGE / thresholds.BINS  # float32 distances: a pair may sit one bin off
    for f in (1e-2, 1e-3):
        point = out[f"fpr_{f:g}"]
        t = point["distance"]
        assert np.mean(neg <= t - width) <= f  # at most the rate asked
        above = np.sort(neg[neg > t + width])
        assert above.size == 0 or np.mean(neg <= above[0] + width) > f  # and the largest such
        assert (
            abs(point["tpr"] - np.mean(pos <= t)) <= np.mean(np.abs(pos - t) <= width) + 5e-7
        )  # rounded to 6 digits
    # equal error: no threshold brings FPR and FNR closer than one pair's step
    cuts = np.sort(np.concatenate([pos, neg]))
    gap = np.min(
        np.abs(np.mean(neg[None] <= cuts[:, None], 1) - np.mean(pos[None] > cuts[:, None], 1))
    )
    t = out["eer"]["distance"]
    ours = abs(np.mean(neg <= t) - np.mean(pos > t))
    assert ours <= gap + 1 / len(pos) + 1 / len(neg)
    assert 0 < out["eer"]["rate"] < 0.5


def test_no_negative_pair_gives_no_threshold():
    f = np.eye(2, dtype=np.float32)
    out = thresholds.operating_points(f, f, [0, 1], [0, 1], [0, 0], [1, 1])
    assert out["negative_pairs"] == 2 and out["positive_pairs"] == 2  # cross-camera both
    out = thresholds.operating_points(f, f, [0, 0], [0, 0], [0, 0], [1, 1])
    assert out["negative_pairs"] == 0 and out["eer"] is None and out["fpr_0.01"] is None
