"""Grouping tracks into identities: average-linkage clustering with cannot-link
constraints, and the pairwise precision and recall that score a grouping
(`reidjax.serving.tracks`)."""

from __future__ import annotations

import numpy as np


def conflicts(tracks) -> np.ndarray:
    """`[n, n]` True where two tracks (`.camera`, `.span` = first, last frame) of one camera
    overlap in time."""
    n = len(tracks)
    out = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = tracks[i], tracks[j]
            if a.camera == b.camera and a.span[0] <= b.span[1] and b.span[0] <= a.span[1]:
                out[i, j] = out[j, i] = True
    return out


def cluster(distances: np.ndarray, cannot: np.ndarray, threshold: float) -> np.ndarray:
    """Average-linkage agglomerative clustering with cannot-link constraints: labels
    `[n]` (0.. in order of first track). Merges the closest allowed pair of groups while
    their average distance is at most `threshold`."""
    n = len(distances)
    d = np.asarray(distances, np.float64).copy()
    np.fill_diagonal(d, np.inf)
    blocked = np.asarray(cannot, bool).copy()
    size = np.ones(n)
    alive = np.ones(n, bool)
    label = np.arange(n)
    while True:
        masked = np.where(blocked | ~alive[:, None] | ~alive[None, :], np.inf, d)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)
        if not masked[i, j] <= threshold:
            break
        i, j = min(i, j), max(i, j)  # j joins i (Lance-Williams, average linkage)
        d[i, :] = d[:, i] = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        d[i, i] = np.inf
        blocked[i, :] = blocked[:, i] = blocked[i] | blocked[j]
        size[i] += size[j]
        alive[j] = False
        label[label == j] = i
    _, first = np.unique(label, return_index=True)
    order = {old: new for new, old in enumerate(label[np.sort(first)])}
    return np.asarray([order[x] for x in label])


def pair_scores(predicted, truth) -> dict:
    """Pairwise precision and recall of an identity assignment: over pairs of tracks,
    those put together that truly belong together (truth < 0: unknown, left out)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    keep = truth >= 0
    p, t = predicted[keep], truth[keep]
    upper = np.triu(np.ones((len(p), len(p)), bool), 1)
    same_p, same_t = (p[:, None] == p[None]) & upper, (t[:, None] == t[None]) & upper
    hits = int((same_p & same_t).sum())
    return {
        "precision": hits / max(int(same_p.sum()), 1) if same_p.any() else 1.0,
        "recall": hits / max(int(same_t.sum()), 1) if same_t.any() else 1.0,
        "predicted_pairs": int(same_p.sum()),
        "true_pairs": int(same_t.sum()),
    }
