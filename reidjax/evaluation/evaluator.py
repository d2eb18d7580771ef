"""The evaluator shared by `train.py` (periodic evaluation) and `eval.py`: the features of
every query and gallery tracklet of a prepared dataset (`reidjax.evaluation.features`, the
extraction the embedder uses too), then distances and the retrieval metrics on the device / host in
chunks (`reidjax.evaluation.metrics`). The model enters only as `predict_fn(variables, clips) ->
features`.

MARS lists every query tracklet in the gallery too: each distinct tracklet is run once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import jax
import numpy as np

from input_pipeline.records import ReIDDataset, TrackletIndex
from reidjax.evaluation import metrics, thresholds
from reidjax.evaluation.features import EvalSpec, FeatureExtractor, PredictFn


@dataclasses.dataclass
class EvalResult:
    """Metrics and everything the pictures and `--save_features` need (host arrays)."""

    metrics: dict
    query_features: np.ndarray
    gallery_features: np.ndarray
    query: TrackletIndex
    gallery: TrackletIndex
    distances: np.ndarray | None = None  # [Q, G] (after re-ranking, when on); None if large

    def table_row(self) -> dict[str, float]:
        cmc = self.metrics["cmc"]
        row = {f"R{k}": float(cmc[k - 1]) for k in (1, 5, 10, 20) if k <= len(cmc)}
        row.update(mAP=self.metrics["mAP"], mINP=self.metrics["mINP"])
        return row


def unique_tracklets(query: TrackletIndex, gallery: TrackletIndex):
    """The distinct tracklets of query ∪ gallery and where each query / gallery item is."""
    first = np.concatenate([query.first, gallery.first]).astype(np.int64)
    count = np.concatenate([query.count, gallery.count]).astype(np.int64)
    pid = np.concatenate([query.pid, gallery.pid])
    camid = np.concatenate([query.camid, gallery.camid])
    keys = first * (1 << 32) + count
    _, keep, inverse = np.unique(keys, return_index=True, return_inverse=True)
    union = TrackletIndex(pid[keep], camid[keep], first[keep], count[keep])
    return union, inverse[: len(query)], inverse[len(query) :]


class Evaluator:
    """Tracklet features and retrieval metrics of a model on a prepared dataset: its
    `query` and `gallery` splits through `FeatureExtractor(predict_fn, spec, mesh,
    progress)` (same arguments), then the spec's distance and re-ranking."""

    def __init__(
        self,
        predict_fn: PredictFn,
        spec: EvalSpec,
        data: ReIDDataset,
        mesh: jax.sharding.Mesh,
        progress: Callable[[str], None] | None = print,
    ):
        self.spec, self.data = spec, data
        for split in ("query", "gallery"):
            if len(data.splits[split]) == 0:
                raise metrics.EvaluationError(
                    f"the {split} split of {data.directory} is empty: nothing to evaluate"
                )
        self.extract = FeatureExtractor(predict_fn, spec, mesh, progress)
        self.union, self.q_pos, self.g_pos = unique_tracklets(
            data.splits["query"], data.splits["gallery"]
        )

    def evaluate(self, variables: dict, rerank: bool | None = None) -> EvalResult:
        """Features of every query and gallery tracklet, distances and the metrics.

        Raises:
            metrics.EvaluationError: no query has a match in the gallery.
        """
        c = self.spec
        rerank = c.rerank if rerank is None else rerank
        feats = self.extract(variables, self.data, self.union, "eval")
        query, gallery = self.data.splits["query"], self.data.splits["gallery"]
        qf, gf = feats[self.q_pos], feats[self.g_pos]
        args = (query.pid, gallery.pid, query.camid, gallery.camid)
        dist = None
        if rerank:
            t0 = time.perf_counter()
            dist = metrics.re_ranking(
                metrics.pairwise_distances(qf, gf, c.distance),
                metrics.pairwise_distances(qf, qf, c.distance),
                metrics.pairwise_distances(gf, gf, c.distance),
                c.rerank_k1, c.rerank_k2, c.rerank_lambda,
            )  # fmt: skip
            logging.info("re-ranking took %.1f s", time.perf_counter() - t0)
            result = metrics.evaluate_rank(dist, *args, max_rank=c.max_rank)
        elif len(qf) * len(gf) <= 1 << 26:  # small: keep the matrix for the pictures
            dist = metrics.pairwise_distances(qf, gf, c.distance)
            result = metrics.evaluate_rank(dist, *args, max_rank=c.max_rank)
        else:  # large: chunked, the matrix is never formed
            result = metrics.evaluate_features(qf, gf, *args, c.distance, c.max_rank)
        plain = None if rerank else dist  # the metric's own distances, when already made
        result["thresholds"] = thresholds.operating_points(qf, gf, *args, c.distance, plain)
        return EvalResult(result, qf, gf, query, gallery, dist)
