"""Operating thresholds: at which distance to call two tracklets the same person.

Retrieval metrics rank; a deployment decides. `operating_points` takes the query and
gallery features of an evaluation and, over every query × gallery pair seen by different
cameras (same identity: a positive pair; different identities: a negative one; identities
below 0, the junk of MARS, left out), finds the distance thresholds at false-positive
rates 1e-2 and 1e-3 (the fraction of negative pairs at or below the threshold) and at the
equal-error point (false-positive rate = false-negative rate). Distances are binned into
2²⁰ bins over [0, 2] (L2-normalised features: cosine 1 − cos and the Euclidean distance
both lie there), so the thresholds are exact to 2e-6 at any gallery size; the pairs are
visited one block of queries at a time. Every evaluation (train.py, eval.py) writes them
into results.json, and `reidjax.serving.search --threshold auto` reads them back.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from reidjax.errors import UserError
from reidjax.evaluation import metrics
from reidjax.runtime.workdir import Workdir

BINS = 1 << 20
RANGE = 2.0
FPRS = (1e-2, 1e-3)


def pair_histograms(
    qf, gf, q_pids, g_pids, q_camids, g_camids, metric: str = "cosine", distances=None
):
    """(positive, negative) histograms `[BINS]` of the cross-camera pair distances, from
    the `[Q, G]` `distances` when the caller has them, else computed block by block."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    pos, neg = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    blocks = [(0, distances)] if distances is not None else metrics.distance_chunks(qf, gf, metric)
    for s, block in blocks:
        rows = slice(s, s + len(block))
        cross = q_camids[rows, None] != g_camids[None, :]
        valid = cross & (q_pids[rows, None] >= 0) & (g_pids[None, :] >= 0)
        same = q_pids[rows, None] == g_pids[None, :]
        bins = np.clip((block / RANGE * BINS).astype(np.int64), 0, BINS - 1)
        pos += np.bincount(bins[valid & same], minlength=BINS)
        neg += np.bincount(bins[valid & ~same], minlength=BINS)
    return pos, neg


def operating_points(
    qf, gf, q_pids, g_pids, q_camids, g_camids, metric="cosine", distances=None
) -> dict:
    """The thresholds (module docstring): `{"fpr_0.01": {"distance", "tpr"}, "fpr_0.001":
    ..., "eer": {"distance", "rate"}, "positive_pairs", "negative_pairs", "metric"}`;
    a threshold is None when there is no positive or no negative pair."""
    pos, neg = pair_histograms(qf, gf, q_pids, g_pids, q_camids, g_camids, metric, distances)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    out = {"metric": metric, "positive_pairs": n_pos, "negative_pairs": n_neg}
    if n_pos == 0 or n_neg == 0:
        for f in FPRS:
            out[f"fpr_{f:g}"] = None
        out["eer"] = None
        return out
    fpr = np.cumsum(neg) / n_neg  # accepting every pair in bins 0..i
    tpr = np.cumsum(pos) / n_pos
    edge = (np.arange(BINS) + 1) * (RANGE / BINS)  # upper edge of bin i
    for f in FPRS:
        i = int(np.searchsorted(fpr, f, side="right")) - 1  # the last bin with FPR <= f
        out[f"fpr_{f:g}"] = (
            {"distance": 0.0, "tpr": 0.0}
            if i < 0
            else {"distance": round(float(edge[i]), 6), "tpr": round(float(tpr[i]), 6)}
        )
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    rate = (fpr[i] + 1 - tpr[i]) / 2
    out["eer"] = {"distance": round(float(edge[i]), 6), "rate": round(float(rate), 6)}
    return out


CHOICES = {"auto": "fpr_0.001", "fpr_0.001": "fpr_0.001", "fpr_0.01": "fpr_0.01", "eer": "eer"}


def run_threshold(workdir: str, which: str = "auto") -> float:
    """A same-person distance threshold: a number, or one of a run's operating points
    from its evaluation (training's `WORKDIR/eval/results.json`, else the newest
    `eval/step<N>/results.json` of eval.py): `auto` (= `fpr_0.001`), `fpr_0.01` or `eer`.

    Raises:
        UserError: an unknown choice, or no evaluation with thresholds in the run.
    """
    try:
        return float(which)
    except ValueError:
        pass
    if which not in CHOICES:
        raise UserError(f"threshold {which!r}: give a distance or one of {list(CHOICES)}")
    folder = Workdir(workdir).eval()
    # training's final report, then eval.py's reports of the latest checkpoints, newest first
    reports = sorted(glob.glob(os.path.join(folder, "step*", "results.json")), key=os.path.getmtime)
    release = os.path.join(workdir, "results.json")  # a release (reidjax.serving.release)
    for path in [os.path.join(folder, "results.json"), *reversed(reports), release]:
        try:
            with open(path) as f:
                point = json.load(f).get("thresholds", {}).get(CHOICES[which])
        except FileNotFoundError:
            continue
        if point:
            return float(point["distance"])
    raise UserError(
        f"no evaluation of {workdir} records a '{CHOICES[which]}' threshold (looked in "
        f"{folder}): run python eval.py --workdir {workdir}, or give the distance"
    )
