"""One feature extraction for every entry point: tracklets in, L2-normalised features out.

Every tracklet is cut into test clips of T frames (`EvalSpec.test_sampler`: `dense`,
every frame in consecutive clips; `rrs`, one restricted-random-sampling clip per
tracklet); a jitted step runs the model on a fixed-shape batch of clips, sharded over the
data mesh, and adds each clip's test feature into its tracklet's sum on the device,
weighted by the clip's number of real frames (a padded last clip with 1 real frame counts
1/T of a full one; padding clips count 0), or equally (`EvalSpec.clip_weights="clips"`).
A model that pools frames over the whole tracklet (DSANet's FWG with
`fwg_scope="tracklet"`) gives per-frame features and log-weights instead; they are pooled
over every real frame of the tracklet with a running log-sum-exp (`accumulate_frames`).
Nothing leaves the device until every batch has run. The tracklet feature is the weighted
mean, L2-normalised. The evaluator (benchmarks) and the embedder (your own tracklets) both
call `FeatureExtractor`; frames come from any `FrameSource` (a prepared dataset, or frames
in memory or on disk). What they read of the config is an `EvalSpec`, made once by the
set-up (`reidjax.experiment.eval_spec`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline.batch import EVAL_FIELDS
from input_pipeline.pipelines import eval_dataset, iterate, to_device
from input_pipeline.records import FrameSource, TrackletIndex
from reidjax.runtime import sharding
from reidjax.training import preemption

PROGRESS_SECONDS = 10.0
# (variables, uint8 clips [B, T, H, W, 3]) -> clip features [B, D], or per-frame
# (features [B, T, D], log-weights [B, T]) for pooling over whole tracklets.
PredictFn = Callable[[dict, jax.Array], jax.Array | tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What the test protocol reads: how tracklets become clips and batches, and how
    features become distances and metrics (`config.input` and `config.eval`; made by
    `reidjax.experiment.eval_spec`, with `worker_kind` resolved for this host)."""

    num_frames: int  # T: frames per test clip
    height: int
    width: int
    test_sampler: str  # dense | rrs
    test_padding: str  # a dense tracklet's short last clip: repeat | loop
    batch_size: int  # clips per global batch; a multiple of the device count
    clip_weights: str  # frames | clips
    workers: int  # reader threads or processes; 0: inline
    worker_kind: str  # threads | processes
    distance: str  # cosine | euclidean
    max_rank: int  # CMC curve length
    rerank: bool  # k-reciprocal re-ranking ...
    rerank_k1: int  # ... with these neighbours
    rerank_k2: int
    rerank_lambda: float


def accumulate(
    sums: jax.Array,
    weights: jax.Array,
    features: jax.Array,
    tracklet: jax.Array,
    mask: jax.Array,
    by_frames: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Adds clip `features` `[B, D]` into per-tracklet `sums` `[N, D]` and `weights` `[N]`,
    weighted by the clip's real frames (`mask` `[B, T]`), or 1 per clip when `by_frames`
    is False; `tracklet` -1 marks padding."""
    real = jnp.sum(mask, axis=1) if by_frames else jnp.any(mask, axis=1)
    w = jnp.where(tracklet >= 0, real, 0).astype(jnp.float32)
    index = jnp.maximum(tracklet, 0)
    sums = sums.at[index].add(features.astype(jnp.float32) * w[:, None])
    return sums, weights.at[index].add(w)


def accumulate_frames(
    sums: jax.Array,
    weights: jax.Array,
    maxima: jax.Array,
    features: jax.Array,
    log_weights: jax.Array,
    tracklet: jax.Array,
    mask: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Adds per-frame `features` `[B, T, D]` with weights exp(`log_weights` `[B, T]`) into
    per-tracklet `sums` `[N, D]` and `weights` `[N]`, over the real frames (`mask`) of real
    clips (`tracklet` ≥ 0). Both are kept scaled by exp(−`maxima` `[N]`), the running
    maximum log-weight of each tracklet (−inf before its first frame), so no exp
    overflows; `tracklet_means` of the result is Σ exp(l)·f / Σ exp(l)."""
    valid = mask & (tracklet >= 0)[:, None]
    logw = jnp.where(valid, log_weights.astype(jnp.float32), -jnp.inf)
    index = jnp.maximum(tracklet, 0)
    new = maxima.at[index].max(jnp.max(logw, axis=1))
    rescale = jnp.where(jnp.isfinite(maxima), jnp.exp(maxima - new), 0.0)
    w = jnp.where(valid, jnp.exp(logw - new[index][:, None]), 0.0)
    sums = sums * rescale[:, None]
    sums = sums.at[index].add(jnp.einsum("bt,btd->bd", w, features.astype(jnp.float32)))
    return sums, (weights * rescale).at[index].add(w.sum(1)), new


def tracklet_means(sums: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted clip means `[N, D]`, L2-normalised."""
    mean = sums / jnp.maximum(weights, 1e-12)[:, None]
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


class FeatureExtractor:
    """Tracklet features of a model, compiled once for any tracklet length and count.

    Args:
        predict_fn: `(variables, uint8 clips) -> features [B, D]` (`ReIDModel.predict`);
            `variables` are passed per call (train state or checkpoint).
        spec: T, frame size, sampler, readers, batch size and clip weights.
        mesh: the data mesh; `spec.batch_size` must be a multiple of its size.
        progress: called with a progress line (process 0); None for silence.
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        spec: EvalSpec,
        mesh: jax.sharding.Mesh,
        progress: Callable[[str], None] | None = print,
    ):
        sharding.check_eval_batch(spec.batch_size, mesh)
        by_frames = spec.clip_weights == "frames"
        self.spec, self.mesh = spec, mesh
        self.progress = progress if jax.process_index() == 0 else None
        # Asked after every batch; True stops the extraction (train.py's evaluation: a
        # preemption notice, `preemption.EvaluationStopped`).
        self.should_stop: Callable[[], bool] | None = None
        self.repl, self.batch_sharding = sharding.replicated(mesh), sharding.data_sharded(mesh)

        def step(acc, variables, batch):
            out = predict_fn(variables, batch["clips"])
            if isinstance(out, tuple):  # per-frame: pooled over whole tracklets
                return accumulate_frames(*acc, *out, batch["tracklet"], batch["frame_mask"])
            return accumulate(*acc, out, batch["tracklet"], batch["frame_mask"], by_frames)

        self.step = jax.jit(
            step,
            in_shardings=(self.repl, self.repl, self.batch_sharding),
            out_shardings=self.repl,
            donate_argnums=(0,),
        )
        self.predict_fn, self.dim = predict_fn, None

    def __call__(
        self, variables: dict, source: FrameSource, index: TrackletIndex, label: str = "embed"
    ) -> np.ndarray:
        """L2-normalised features `[N, D]` of the tracklets of `index`, whose frames
        `source` reads, with the one compiled step."""
        s = self.spec
        hosts = jax.process_count()
        dataset = eval_dataset(
            source, index, s.num_frames, s.batch_size // hosts,
            jax.process_index(), hosts, s.test_sampler, padding=s.test_padding,
        )  # fmt: skip
        num_batches = len(dataset)
        if self.dim is None:  # the feature size, from shapes only (traced once)
            x = jax.ShapeDtypeStruct((1, s.num_frames, s.height, s.width, 3), jnp.uint8)
            out = jax.eval_shape(self.predict_fn, variables, x)
            self.frames = isinstance(out, tuple)
            self.dim = (out[0] if self.frames else out).shape[-1]
        # Rows rounded up to a power of two: tracklet counts share compiled steps (a
        # handful of compilations for any number of embed calls, not one per count).
        rows = 1 << max(0, (len(index) - 1).bit_length())
        acc = (jnp.zeros((rows, self.dim), jnp.float32), jnp.zeros((rows,), jnp.float32))
        if self.frames:  # running maximum log-weight per tracklet
            acc = (*acc, jnp.full((rows,), -jnp.inf, jnp.float32))
        acc = jax.device_put(acc, self.repl)
        stream = iter(iterate(dataset, s.workers, s.worker_kind))
        frames_per_batch = s.batch_size * s.num_frames
        start = last = time.perf_counter()
        try:
            for i, batch in enumerate(to_device(stream, self.batch_sharding, EVAL_FIELDS)):
                acc = self.step(acc, variables, batch)
                if self.should_stop is not None and self.should_stop():
                    raise preemption.EvaluationStopped(f"{label}: stopped after batch {i + 1}")
                now = time.perf_counter()
                if self.progress and (now - last > PROGRESS_SECONDS or i + 1 == num_batches):
                    jax.block_until_ready(acc)
                    now, last = time.perf_counter(), time.perf_counter()
                    rate = (i + 1) * frames_per_batch / (now - start)
                    self.progress(
                        f"{label}: {i + 1}/{num_batches} batches, {len(index)} tracklets, "
                        f"{rate:,.0f} frames/s"
                    )
        finally:
            stream.close()  # stops reader threads / worker processes
        return np.asarray(jax.device_get(tracklet_means(*acc[:2])))[: len(index)]
