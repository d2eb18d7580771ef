"""Retrieval metrics against brute-force loops and the re-ranking reference code."""

import numpy as np
import pytest

from reidjax.evaluation import metrics


def brute_force(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The common per-query reference loop (stable sort: ties by gallery index)."""
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        remove = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        raw = (g_pids[order] == q_pids[i])[~remove].astype(np.float64)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.max(np.where(raw == 1))
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = np.array([x / (k + 1.0) for k, x in enumerate(raw.cumsum())]) * raw
        all_ap.append(precision.sum() / raw.sum())
    cmc = np.asarray(all_cmc).sum(0) / len(all_cmc)
    return cmc, np.mean(all_ap), np.mean(all_inp), len(all_cmc)


def random_problem(rng, nq, ng, ids, cams, ties=False):
    q_pids = rng.integers(0, ids, nq)
    g_pids = rng.integers(0, ids, ng)  # pid 0 plays the distractors
    q_camids = rng.integers(0, cams, nq)
    g_camids = rng.integers(0, cams, ng)
    q_pids[:3] = ids + 7  # queries that have no match at all
    dist = rng.random((nq, ng))
    if ties:
        dist = np.round(dist * 8) / 8  # many exact ties
    return dist, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize(
    "nq,ng,ids,cams,ties,chunk",
    [
        (40, 300, 12, 3, False, 1 << 23),
        (57, 211, 30, 2, False, 300),  # several chunks, one row less than a chunk at the end
        (25, 120, 6, 6, True, 1 << 23),
        (30, 90, 5, 1, False, 1000),  # one camera: everything same-camera is junk
    ],
)
def test_evaluate_rank_equals_brute_force(rng, nq, ng, ids, cams, ties, chunk):
    problem = random_problem(rng, nq, ng, ids, cams, ties)
    cmc, ap, inp, valid = brute_force(*problem, max_rank=20) if cams > 1 else (None, None, None, 0)
    if cams == 1:
        with pytest.raises(metrics.EvaluationError, match="none of the 30 queries"):
            metrics.evaluate_rank(*problem, chunk_elements=chunk)
        return
    out = metrics.evaluate_rank(*problem, max_rank=20, chunk_elements=chunk)
    np.testing.assert_allclose(out["cmc"][: len(cmc)], cmc, atol=1e-6)
    assert abs(out["mAP"] - ap) < 1e-6 and abs(out["mINP"] - inp) < 1e-6
    assert out["num_valid_queries"] == valid < nq and out["num_queries"] == nq


def test_hand_computed_case():
    # one query (pid 1, cam 0); gallery ranked: [junk(1,c0), other, good(1,c1), other, good]
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([1, 2, 1, 3, 1])
    g_cams = np.array([0, 1, 1, 1, 2])
    out = metrics.evaluate_rank(dist, [1], g_pids, [0], g_cams, max_rank=4)
    # junk removed: [other, good, other, good] -> hits at ranks 2 and 4
    np.testing.assert_array_equal(out["cmc"], [0, 1, 1, 1])
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert out["mINP"] == pytest.approx(2 / 4)


def test_features_path_equals_distance_matrix(rng):
    qf = rng.normal(size=(33, 16)).astype(np.float32)
    gf = rng.normal(size=(150, 16)).astype(np.float32)
    _, q_pids, g_pids, q_camids, g_camids = random_problem(rng, 33, 150, 10, 3)
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    for metric, reference in (
        ("cosine", 1 - qn @ gn.T),
        ("euclidean", np.linalg.norm(qf[:, None] - gf[None], axis=-1)),
    ):
        dist = metrics.pairwise_distances(qf, gf, metric)
        np.testing.assert_allclose(dist, reference, atol=2e-5)
        out = metrics.evaluate_features(
            qf, gf, q_pids, g_pids, q_camids, g_camids, metric, chunk_elements=1000
        )
        cmc, ap, inp, _ = brute_force(reference, q_pids, g_pids, q_camids, g_camids)
        np.testing.assert_allclose(out["cmc"], cmc, atol=1e-6)
        assert abs(out["mAP"] - ap) < 1e-6 and abs(out["mINP"] - inp) < 1e-6


def test_clear_errors():
    with pytest.raises(metrics.EvaluationError, match="query set is empty"):
        metrics.evaluate_rank(np.zeros((0, 3)), [], [1, 2, 3], [], [0, 0, 0])
    with pytest.raises(metrics.EvaluationError, match="none of the 2 queries has a match"):
        metrics.evaluate_rank(np.zeros((2, 3)), [5, 6], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"distmat is \(2, 2\)"):
        metrics.evaluate_rank(np.zeros((2, 2)), [5, 6], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="unknown distance 'manhattan'"):
        metrics.pairwise_distances(np.zeros((1, 2)), np.zeros((1, 2)), "manhattan")


def reference_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The authors' published per-item implementation (Zhong et al., 2017), verbatim logic."""
    original_dist = np.concatenate(
        [
            np.concatenate([q_q_dist, q_g_dist], axis=1),
            np.concatenate([q_g_dist.T, g_g_dist], axis=1),
        ],
        axis=0,
    )
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            half = int(np.around(k1 / 2.0)) + 1
            candidate_forward = initial_rank[candidate, :half]
            candidate_backward = initial_rank[candidate_forward, :half]
            fi_candidate = np.where(candidate_backward == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward[fi_candidate]
            shared = np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)
            if len(shared) > 2.0 / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (7, 3, 0.5), (5, 1, 0.1)])
def test_re_ranking_matches_reference(rng, k1, k2, lam):
    feats = rng.normal(size=(70, 8)).astype(np.float32)
    # clustered features, so that neighbourhoods overlap as they do in re-ID
    feats += 2.0 * rng.normal(size=(7, 8)).astype(np.float32)[rng.integers(0, 7, 70)]
    qf, gf = feats[:15], feats[15:]
    q_g = metrics.pairwise_distances(qf, gf, "euclidean").astype(np.float64)
    q_q = metrics.pairwise_distances(qf, qf, "euclidean").astype(np.float64)
    g_g = metrics.pairwise_distances(gf, gf, "euclidean").astype(np.float64)
    for d in (q_q, g_g):
        np.fill_diagonal(d, 0.0)
    expected = reference_re_ranking(q_g, q_q, g_g, k1, k2, lam)
    got = metrics.re_ranking(q_g, q_q, g_g, k1, k2, lam)
    assert got.shape == (15, 55)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, q_g / q_g.max())
