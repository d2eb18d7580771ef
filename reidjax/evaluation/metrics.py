"""Re-ID retrieval metrics: CMC, mAP, mINP, distances and k-reciprocal re-ranking.

For each query the gallery is ranked by increasing distance (ties broken by gallery index,
as a stable sort would). Gallery items with the query's pid and camera are junk and are
removed from the ranking; items with the pid and another camera are the good matches.
Queries without a good match are skipped and counted (`num_valid_queries`).

The ranking never sorts index arrays: each row's distances are sorted once (values only)
and the rank of every same-pid item is found by binary search, so a query costs one sort
plus O(matches · log G). Rows are processed in chunks, so memory is bounded by the chunk
(`evaluate_features` never forms the full query × gallery matrix).
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from reidjax.errors import ConfigError, UserError

# Elements of distance matrix handled at once (a few hundred MiB of temporaries).
CHUNK_ELEMENTS = 1 << 23


class EvaluationError(UserError, ValueError):
    """An evaluation problem that has no answer (no queries, no valid query)."""


def _check(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids):
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    if len(q_pids) == 0:
        raise EvaluationError("the query set is empty: nothing to evaluate")
    if len(g_pids) == 0:
        raise EvaluationError("the gallery is empty: nothing to rank")
    expected = (len(q_pids), len(g_pids))
    if distmat is not None and tuple(distmat.shape) != expected:
        raise ValueError(f"distmat is {distmat.shape}, expected (queries, gallery) {expected}")
    if len(q_camids) != len(q_pids) or len(g_camids) != len(g_pids):
        raise ValueError("pids and camids must have one entry per query / gallery item")
    return q_pids, g_pids, q_camids, g_camids


def rank_rows(
    dist: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-query results for distance rows `dist` `[Q, G]`.

    Returns:
        `first` (rank of the first good match after junk removal, -1 when none), `ap`,
        `inp` (0 for queries without a good match) and `valid` (has a good match), each `[Q]`.
    """
    q = dist.shape[0]
    same_pid = g_pids[None, :] == q_pids[:, None]
    rows, cols = np.nonzero(same_pid)  # every good or junk item, by row
    first = np.full(q, -1, np.int64)
    ap, inp = np.zeros(q), np.zeros(q)
    if len(rows) == 0:
        return {"first": first, "ap": ap, "inp": inp, "valid": np.zeros(q, bool)}
    junk = g_camids[cols] == q_camids[rows]
    values = dist[rows, cols]
    ordered = np.sort(dist, axis=1)
    # rank among all items = #strictly smaller + #equal with a smaller index (stable order)
    less = np.empty(len(rows), np.int64)
    ties = np.empty(len(rows), np.int64)
    starts = np.searchsorted(rows, np.arange(q + 1))
    for r in np.flatnonzero(np.diff(starts)):
        s, e = starts[r], starts[r + 1]
        less[s:e] = np.searchsorted(ordered[r], values[s:e], side="left")
        ties[s:e] = np.searchsorted(ordered[r], values[s:e], side="right") - less[s:e]
    rank = less
    for i in np.flatnonzero(ties > 1):  # exact ties: the stable order decides
        rank[i] = less[i] + np.count_nonzero(dist[rows[i], : cols[i]] == values[i])
    # order the same-pid items of each row by rank, then drop junk from the ranking
    order = np.lexsort((rank, rows))
    rows, rank, junk = rows[order], rank[order], junk[order]
    junk_before = np.cumsum(junk) - junk
    row_start = starts[rows]
    junk_before -= (np.cumsum(junk) - junk)[row_start]
    kept_rank = rank - junk_before  # 0-based position in the junk-free ranking
    good = ~junk
    g_rows, g_rank = rows[good], kept_rank[good]
    g_count = np.bincount(g_rows, minlength=q)
    g_start = np.concatenate([[0], np.cumsum(g_count)[:-1]])
    hit = np.arange(len(g_rows)) - g_start[g_rows] + 1  # 1-based index among good hits
    valid = g_count > 0
    ap = np.bincount(g_rows, weights=hit / (g_rank + 1), minlength=q).astype(np.float64)
    ap[valid] /= g_count[valid]
    first[valid] = g_rank[g_start[valid]]
    last = g_rank[g_start[valid] + g_count[valid] - 1]
    inp[valid] = g_count[valid] / (last + 1)
    return {"first": first, "ap": ap, "inp": inp, "valid": valid}


def _summarise(parts: list[dict], max_rank: int) -> dict:
    first = np.concatenate([p["first"] for p in parts])
    valid = np.concatenate([p["valid"] for p in parts])
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise EvaluationError(
            f"none of the {len(valid)} queries has a match in the gallery (same pid, another "
            "camera): check the query/gallery split"
        )
    cmc = np.array([np.mean(first[valid] <= k) for k in range(max_rank)])
    ap = np.concatenate([p["ap"] for p in parts])[valid]
    inp = np.concatenate([p["inp"] for p in parts])[valid]
    return {
        "cmc": cmc,
        "mAP": float(ap.mean()),
        "mINP": float(inp.mean()),
        "num_valid_queries": num_valid,
        "num_queries": len(valid),
    }


def _row_chunk(num_gallery: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(num_gallery, 1))


def evaluate_rank(
    distmat: np.ndarray,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 20,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> dict:
    """CMC, mAP and mINP of a query × gallery distance matrix.

    Args:
        distmat: `[Q, G]` distances (smaller is closer); any array that slices by rows,
            so a `np.memmap` works for problems larger than memory.
        max_rank: length of the CMC curve.

    Returns:
        `cmc` `[max_rank]` (cmc[k] = rank-(k+1) accuracy), `mAP`, `mINP`,
        `num_valid_queries` (queries with a good match) and `num_queries`.

    Raises:
        EvaluationError: an empty query set or gallery, or no query with a match.
    """
    q_pids, g_pids, q_camids, g_camids = _check(distmat, q_pids, g_pids, q_camids, g_camids)
    step = _row_chunk(len(g_pids), chunk_elements)
    parts = [
        rank_rows(
            np.asarray(distmat[s : s + step]), q_pids[s : s + step], g_pids,
            q_camids[s : s + step], g_camids,
        )
        for s in range(0, len(q_pids), step)
    ]  # fmt: skip
    return _summarise(parts, max_rank)


@jax.jit
def _cosine(q: jax.Array, g: jax.Array) -> jax.Array:
    q = q / jnp.maximum(jnp.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    g = g / jnp.maximum(jnp.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return 1.0 - jnp.dot(q, g.T, precision="highest")


@jax.jit
def _euclidean(q: jax.Array, g: jax.Array) -> jax.Array:
    d2 = (
        jnp.sum(q * q, axis=1)[:, None]
        + jnp.sum(g * g, axis=1)[None, :]
        - 2.0 * jnp.dot(q, g.T, precision="highest")
    )
    return jnp.sqrt(jnp.maximum(d2, 0.0))


DISTANCES = {"cosine": _cosine, "euclidean": _euclidean}


def distance_chunks(
    qf, gf, metric: str = "cosine", chunk_elements: int = CHUNK_ELEMENTS
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields `(first_row, dist[first_row : first_row + n])` blocks of the query × gallery
    distances, computed on the default device; the full matrix is never formed.

    `cosine` is 1 − cos (features are L2-normalised here); `euclidean` is the L2 distance.
    Chunks have a fixed row count (the last is padded), so one compilation serves them all.
    """
    if metric not in DISTANCES:
        raise ConfigError(f"unknown distance {metric!r}; valid: {list(DISTANCES)}")
    fn = DISTANCES[metric]
    qf = np.asarray(qf, np.float32)
    gf = jnp.asarray(gf, jnp.float32)
    step = min(_row_chunk(gf.shape[0], chunk_elements), len(qf))
    for s in range(0, len(qf), step):
        block = qf[s : s + step]
        n = len(block)
        if n < step:
            block = np.concatenate([block, np.zeros((step - n, qf.shape[1]), np.float32)])
        yield s, np.asarray(fn(jnp.asarray(block), gf))[:n]


def pairwise_distances(qf, gf, metric: str = "cosine") -> np.ndarray:
    """The full `[Q, G]` distance matrix (for re-ranking and pictures), float32."""
    out = np.empty((len(qf), len(gf)), np.float32)
    for s, block in distance_chunks(qf, gf, metric):
        out[s : s + len(block)] = block
    return out


def evaluate_features(
    qf,
    gf,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric: str = "cosine",
    max_rank: int = 20,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> dict:
    """`evaluate_rank` on features: distances on the device and ranking on the host, one
    chunk of queries at a time (bounded memory for 10⁴ × 10⁵ problems)."""
    q_pids, g_pids, q_camids, g_camids = _check(None, q_pids, g_pids, q_camids, g_camids)
    parts = []
    for s, block in distance_chunks(qf, gf, metric, chunk_elements):
        e = s + len(block)
        parts.append(rank_rows(block, q_pids[s:e], g_pids, q_camids[s:e], g_camids))
    return _summarise(parts, max_rank)


def re_ranking(
    q_g: np.ndarray,
    q_q: np.ndarray,
    g_g: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) of the query × gallery distances.

    Computes the same function as the authors' reference code (float32, squared distances
    normalised per row, k-reciprocal sets expanded with their k1/2 sets, local query
    expansion over k2 neighbours, Jaccard distance mixed with weight `lambda_value`), with
    sparse matrices in place of its per-item loops.

    Args:
        q_g, q_q, g_g: query×gallery, query×query, gallery×gallery distances.

    Returns:
        The re-ranked `[Q, G]` distances (float32). Memory is O((Q+G)²) for the original
        distances; for LS-VID-sized problems use a machine with the room for it.
    """
    import scipy.sparse as sp

    nq = q_g.shape[0]
    original = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32)
    original = np.power(original, 2)
    original = original / np.max(original, axis=1, keepdims=True)
    n = original.shape[0]
    k_half = int(np.around(k1 / 2.0))
    depth = max(k1, k_half, k2) + 1
    if depth >= n:
        raise ValueError(f"re-ranking with k1={k1} needs more than {depth} tracklets, got {n}")
    # the nearest `depth` neighbours of each row, in order
    part = np.argpartition(original, depth, axis=1)[:, :depth]
    nearest = np.take_along_axis(
        part, np.argsort(np.take_along_axis(original, part, axis=1), axis=1), axis=1
    )

    def reciprocal(k: int):
        rows = np.repeat(np.arange(n), k + 1)
        a = sp.csr_matrix((np.ones(n * (k + 1), np.float32), (rows, nearest[:, : k + 1].ravel())),
                          shape=(n, n))  # fmt: skip
        return a.multiply(a.T).tocsr()  # i and j in each other's top k+1

    r = reciprocal(k1)
    r_half = reciprocal(k_half)
    # candidate c in R(i) expands R(i) by R_half(c) when |R_half(c) ∩ R(i)| > 2/3 |R_half(c)|
    overlap = (r @ r_half.T).tocsr()  # [i, c] = |R(i) ∩ R_half(c)|
    size_half = np.asarray(r_half.sum(axis=1)).ravel()
    cand = r.tocoo()
    inter = np.asarray(overlap[cand.row, cand.col]).ravel()
    take = inter > 2.0 / 3.0 * size_half[cand.col]
    expand = sp.csr_matrix(
        (np.ones(int(take.sum()), np.float32), (cand.row[take], cand.col[take])), shape=(n, n)
    )
    members = ((r + expand @ r_half) > 0).tocoo()
    weight = np.exp(-original[members.row, members.col])
    norm = np.bincount(members.row, weights=weight, minlength=n)
    v = sp.csr_matrix(
        ((weight / norm[members.row]).astype(np.float32), (members.row, members.col)),
        shape=(n, n),
    )
    if k2 != 1:
        rows = np.repeat(np.arange(n), k2)
        qe = sp.csr_matrix(
            (np.full(n * k2, 1.0 / k2, np.float32), (rows, nearest[:, :k2].ravel())), shape=(n, n)
        )
        v = (qe @ v).tocsr()
    v.sum_duplicates()
    # Jaccard: sum_k min(V[i, k], V[j, k]) over the shared non-zeros, for queries i
    vq = v[:nq].tocoo()
    vc = v.tocsc()
    counts = np.diff(vc.indptr)[vq.col]
    pair_q = np.repeat(vq.row, counts)
    pair_a = np.repeat(vq.data, counts)
    starts = np.repeat(vc.indptr[vq.col], counts)
    offsets = np.arange(len(pair_q)) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = starts + offsets
    pair_j = vc.indices[idx]
    mins = np.minimum(pair_a, vc.data[idx]).astype(np.float32)
    temp_min = np.bincount(pair_q * n + pair_j, weights=mins, minlength=nq * n)
    temp_min = temp_min.reshape(nq, n).astype(np.float32)
    jaccard = 1.0 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + original[:nq] * lambda_value
    return final[:, nq:]
