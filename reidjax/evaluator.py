"""The evaluator shared by `train.py` (periodic evaluation) and `eval.py`.

Every query and gallery tracklet is cut into test clips of T frames
(`config.input.test_sampler`: `dense`, every frame in consecutive clips; `rrs`, one
restricted-random-sampling clip per tracklet, DSANet Table 2's protocol); a jitted step runs
the model on a fixed-shape batch of clips, sharded over the data mesh, and adds each clip's
test feature into its tracklet's sum on the device, weighted by the clip's number of real
frames (a loop-padded last clip with 1 real frame counts 1/T of a full one; padding clips
count 0). Nothing leaves the device until every batch has run. The tracklet feature is the
weighted mean of the model's test feature, L2-normalised. Distances and the retrieval
metrics follow on the device / host in chunks (`reidjax.metrics`). The model enters only as
`predict_fn(variables, clips) -> features`.

MARS lists every query tracklet in the gallery too: each distinct tracklet is run once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from input_pipeline.pipelines import eval_dataset, iterate, to_device
from input_pipeline.records import ReIDDataset, TrackletIndex
from input_pipeline.sampling import TEST_SAMPLERS
from reidjax import metrics, sharding
from reidjax.errors import ConfigError

PROGRESS_SECONDS = 10.0
EVAL_KEYS = ("clips", "tracklet", "frame_mask")
# (variables, uint8 clips [B, T, H, W, 3]) -> clip features [B, D].
PredictFn = Callable[[dict, jax.Array], jax.Array]


def accumulate(
    sums: jax.Array, weights: jax.Array, features: jax.Array, tracklet: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Adds clip `features` `[B, D]` into per-tracklet `sums` `[N, D]` and `weights` `[N]`,
    weighted by the clip's real frames (`mask` `[B, T]`); `tracklet` -1 marks padding."""
    w = jnp.where(tracklet >= 0, jnp.sum(mask, axis=1), 0).astype(jnp.float32)
    index = jnp.maximum(tracklet, 0)
    sums = sums.at[index].add(features.astype(jnp.float32) * w[:, None])
    return sums, weights.at[index].add(w)


def tracklet_means(sums: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted clip means `[N, D]`, L2-normalised."""
    mean = sums / jnp.maximum(weights, 1e-12)[:, None]
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass
class EvalResult:
    """Metrics and everything the pictures and `--save-features` need (host arrays)."""

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
    """Tracklet features and retrieval metrics of a model on a prepared dataset.

    Args:
        predict_fn: `(variables, uint8 clips) -> features [B, D]` (`ReIDModel.predict`);
            `variables` are passed per call (train state or checkpoint).
        config: `config.input` (T, frame size), `config.eval` (batch, distance, re-ranking).
        data: the prepared dataset (its `query` and `gallery` splits).
        mesh: the data mesh; `config.eval.batch_size` must be a multiple of its size.
        progress: called with a progress line (process 0); None for silence.
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        config: ml_collections.ConfigDict,
        data: ReIDDataset,
        mesh: jax.sharding.Mesh,
        progress: Callable[[str], None] | None = print,
    ):
        self.config, self.data, self.mesh = config, data, mesh
        self.progress = progress if jax.process_index() == 0 else None
        batch = config.eval.batch_size
        devices, hosts = mesh.shape["data"], jax.process_count()
        if batch % devices or batch % hosts:
            raise ConfigError(
                f"config.eval.batch_size={batch} is not divisible by the {devices} devices "
                f"(and {hosts} processes) of the data mesh; set --config.eval.batch_size to a "
                "multiple of it"
            )
        if config.input.test_sampler not in TEST_SAMPLERS:
            raise ConfigError(
                f"Unknown config.input.test_sampler {config.input.test_sampler!r}; "
                f"valid: {list(TEST_SAMPLERS)}"
            )
        for split in ("query", "gallery"):
            if len(data.splits[split]) == 0:
                raise metrics.EvaluationError(
                    f"the {split} split of {data.directory} is empty: nothing to evaluate"
                )
        self.repl, self.batch_sharding = sharding.replicated(mesh), sharding.data_sharded(mesh)

        def step(sums, weights, variables, batch):
            features = predict_fn(variables, batch["clips"])
            return accumulate(sums, weights, features, batch["tracklet"], batch["frame_mask"])

        self.step = jax.jit(
            step,
            in_shardings=(self.repl, self.repl, self.repl, self.batch_sharding),
            out_shardings=(self.repl, self.repl),
            donate_argnums=(0, 1),
        )
        self.predict_fn, self.dim = predict_fn, None
        self.union, self.q_pos, self.g_pos = unique_tracklets(
            data.splits["query"], data.splits["gallery"]
        )

    def features(
        self, variables: dict, index: TrackletIndex, label: str = "eval", data=None
    ) -> np.ndarray:
        """L2-normalised tracklet features `[N, D]` of the tracklets of `index`, read from
        `data` (default: the evaluator's dataset) with the one compiled step."""
        c = self.config
        hosts = jax.process_count()
        dataset = eval_dataset(
            data or self.data, index, c.input.num_frames, c.eval.batch_size // hosts,
            jax.process_index(), hosts, c.input.test_sampler,
        )  # fmt: skip
        num_batches = len(dataset)
        if self.dim is None:  # the feature size, from shapes only (traced once)
            x = jax.ShapeDtypeStruct(
                (1, c.input.num_frames, c.input.height, c.input.width, 3), jnp.uint8
            )
            self.dim = jax.eval_shape(self.predict_fn, variables, x).shape[-1]
        # Rows rounded up to a power of two: tracklet counts share compiled steps (a
        # handful of compilations for any number of embed calls, not one per count).
        rows = 1 << max(0, (len(index) - 1).bit_length())
        sums = jax.device_put(jnp.zeros((rows, self.dim), jnp.float32), self.repl)
        weights = jax.device_put(jnp.zeros((rows,), jnp.float32), self.repl)
        stream = iter(iterate(dataset, c.input.workers, c.input.worker_kind))
        frames_per_batch = c.eval.batch_size * c.input.num_frames
        start = last = time.perf_counter()
        try:
            for i, batch in enumerate(to_device(stream, self.batch_sharding, EVAL_KEYS)):
                sums, weights = self.step(sums, weights, variables, batch)
                now = time.perf_counter()
                if self.progress and (now - last > PROGRESS_SECONDS or i + 1 == num_batches):
                    jax.block_until_ready(sums)
                    now, last = time.perf_counter(), time.perf_counter()
                    rate = (i + 1) * frames_per_batch / (now - start)
                    self.progress(
                        f"{label}: {i + 1}/{num_batches} batches, {len(index)} tracklets, "
                        f"{rate:,.0f} frames/s"
                    )
        finally:
            stream.close()  # stops reader threads / worker processes
        return np.asarray(jax.device_get(tracklet_means(sums, weights)))[: len(index)]

    def evaluate(self, variables: dict, rerank: bool | None = None) -> EvalResult:
        """Features of every query and gallery tracklet, distances and the metrics.

        Raises:
            metrics.EvaluationError: no query has a match in the gallery.
        """
        c = self.config.eval
        rerank = c.rerank if rerank is None else rerank
        feats = self.features(variables, self.union, "eval")
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
        return EvalResult(result, qf, gf, query, gallery, dist)
