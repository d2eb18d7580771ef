"""grain pipelines of training batches and evaluation clips over a prepared dataset.

Training: element `s` of the `MapDataset` is global batch `s`, computed from (seed, s)
alone; each host keeps its slice. Evaluation: ordered fixed-size batches of dense clips,
with masks, padded so that every host runs the same number of batches. Frames are decoded
straight into the batch array (no per-frame array); a training batch carries each clip's
flip and erasing box, which the jitted train step applies (`apply_augmentation`).
`iterate` runs either over reader threads or worker processes (`config.input.workers`,
`config.input.worker_kind`); the batches are the same. Both end at `to_device`: global
`jax.Array`s sharded over the mesh, built from each host's slice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence

import grain
import jax
import numpy as np
from absl import flags

from input_pipeline.batch import EvalBatch, TrainBatch
from input_pipeline.errors import DataArgumentError
from input_pipeline.records import ReIDDataset, TrackletIndex
from input_pipeline.sampling import (
    TEST_SAMPLERS,
    augment_params,
    dense_clips,
    make_batch_sampler,
    rrs_test_indices,
    temporal_indices,
)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """What a training batch holds (from `config.input` and `config.train`)."""

    ids_per_batch: int = 8
    clips_per_id: int = 4
    num_frames: int = 4
    sampler: str = "stride"
    frame_stride: int = 8
    stride_threshold: str = "lineage"
    flip_prob: float = 0.5
    erasing_prob: float = 0.5
    seed: int = 0
    batch_sampler: str = "tracklets"

    @property
    def global_batch(self) -> int:
        return self.ids_per_batch * self.clips_per_id


class TrainBatches:
    """Global batch `step` → this host's slice, as a pure function of (seed, step).

    Args:
        data: the prepared dataset.
        spec: batch composition and augmentation.
        process_index, process_count: this host and the number of hosts; each host gets
            clips [i·B/H, (i+1)·B/H) of the global batch B.
        debug: add `step` to every batch (host only, for tests and debugging).

    Raises:
        DataArgumentError: a global batch not divisible by the number of hosts.
    """

    def __init__(
        self,
        data: ReIDDataset,
        spec: TrainSpec,
        process_index: int = 0,
        process_count: int = 1,
        debug: bool = False,
    ):
        if spec.global_batch % process_count:
            raise DataArgumentError(
                f"global batch {spec.global_batch} is not divisible by {process_count} hosts"
            )
        self.data, self.spec, self.debug = data, spec, debug
        self.index = data.splits["train"]
        self.sampler = make_batch_sampler(
            spec.batch_sampler, self.index.pid, spec.ids_per_batch, spec.clips_per_id, spec.seed
        )
        # An epoch as the sampler counts it: the one number the LR schedule reads too.
        self.steps_per_epoch = self.sampler.steps_per_epoch
        per_host = spec.global_batch // process_count
        self.positions = range(process_index * per_host, (process_index + 1) * per_host)

    def dataset(self, start_step: int = 0, num_steps: int = 10**9) -> grain.MapDataset:
        """Batches `start_step, start_step + 1, ...` as a grain `MapDataset`."""
        return grain.MapDataset.range(start_step, start_step + num_steps).map(self)

    def __call__(self, step: int) -> TrainBatch:
        """This host's slice of global batch `step` (`input_pipeline.batch.TrainBatch`)."""
        s = self.spec
        tracklets = self.sampler.batch(step)[self.positions.start : self.positions.stop]
        h, w = self.data.size
        clips = np.empty((len(tracklets), s.num_frames, h, w, 3), np.uint8)
        flip = np.zeros(len(tracklets), bool)
        erase = np.zeros((len(tracklets), 4), np.int32)
        for row, (position, t) in enumerate(zip(self.positions, tracklets, strict=True)):
            rng = np.random.default_rng([s.seed, 2, step, position])
            frames = temporal_indices(
                int(self.index.count[t]),
                s.num_frames,
                s.sampler,
                rng,
                s.frame_stride,
                s.stride_threshold,
            )
            self.data.read_into(self.index.first[t] + frames, clips[row])
            flip[row], erase[row] = augment_params(rng, h, w, s.flip_prob, s.erasing_prob)
        batch = TrainBatch(
            clips=clips,
            flip=flip,
            erase=erase,
            labels=self.index.pid[tracklets].astype(np.int32),
            cameras=self.index.camid[tracklets].astype(np.int32),
        )
        if self.debug:
            batch["step"] = np.int64(step)
        return batch


def train_dataset(
    data: ReIDDataset,
    spec: TrainSpec,
    start_step: int = 0,
    num_steps: int = 10**9,
    process_index: int = 0,
    process_count: int = 1,
    debug: bool = False,
) -> grain.MapDataset:
    """Batches `start_step, start_step + 1, ...` as a grain `MapDataset` (random access, so
    resuming at a step needs no replay). Iterate it with `iterate`."""
    batches = TrainBatches(data, spec, process_index, process_count, debug)
    return batches.dataset(start_step, num_steps)


@dataclasses.dataclass(frozen=True)
class EvalClips:
    """The test clips of one split, in order: tracklet, frame indices and mask per clip."""

    tracklet: np.ndarray  # [C]
    frames: np.ndarray  # [C, T] indices into the tracklet
    mask: np.ndarray  # [C, T] True where the frame is counted


def eval_clips(
    data: ReIDDataset,
    split: str | TrackletIndex,
    num_frames: int,
    sampler: str = "dense",
    padding: str = "repeat",
) -> EvalClips:
    """The test clips of every tracklet of `split` (a split name or a `TrackletIndex`).

    `dense`: consecutive clips of `num_frames` covering every frame once (the last one
    padded as `padding` says, its padding masked: `dense_clips`). `rrs`: one clip per
    tracklet, the first frame of each of T equal chunks (`rrs_test_indices`).
    """
    if sampler not in TEST_SAMPLERS:
        raise DataArgumentError(f"Unknown test sampler {sampler!r}; valid: {list(TEST_SAMPLERS)}")
    index = data.splits[split] if isinstance(split, str) else split
    tracklet, frames, mask = [], [], []
    for t, count in enumerate(index.count):
        if sampler == "rrs":
            idx = rrs_test_indices(int(count), num_frames)[None]
            valid = np.ones_like(idx, bool)
        else:
            idx, valid = dense_clips(int(count), num_frames, padding)
        tracklet += [t] * len(idx)
        frames.append(idx)
        mask.append(valid)
    return EvalClips(np.asarray(tracklet), np.concatenate(frames), np.concatenate(mask))


class EvalBatches:
    """Batch `i` of this host's evaluation stream: fixed shapes, padding masked.

    The clip list is padded with empty clips to a multiple of batch_size × process_count,
    so every host runs the same number of batches; host h takes batches h, h + H, ...
    """

    def __init__(
        self,
        data: ReIDDataset,
        split: str | TrackletIndex,
        num_frames: int,
        batch_size: int,
        process_index: int = 0,
        process_count: int = 1,
        sampler: str = "dense",
        debug: bool = False,
        padding: str = "repeat",
    ):
        self.data, self.batch_size, self.debug = data, batch_size, debug
        self.index = data.splits[split] if isinstance(split, str) else split
        self.clips = eval_clips(data, self.index, num_frames, sampler, padding)
        per_round = batch_size * process_count
        total = -(-len(self.clips.tracklet) // per_round) * per_round
        self.num_batches = total // per_round
        self.process_index, self.process_count = process_index, process_count
        self.num_frames = num_frames

    def __len__(self) -> int:
        return self.num_batches

    def __call__(self, i: int) -> EvalBatch:
        """Batch `i` of this host (`input_pipeline.batch.EvalBatch`); with `debug`, each
        frame's index in its tracklet too (`frame_index`, -1 for padding)."""
        global_batch = i * self.process_count + self.process_index
        start = global_batch * self.batch_size
        h, w = self.data.size
        rows = range(start, min(start + self.batch_size, len(self.clips.tracklet)))
        clips = np.empty((self.batch_size, self.num_frames, h, w, 3), np.uint8)
        clips[len(rows) :] = 0  # padding clips
        mask = np.zeros((self.batch_size, self.num_frames), bool)
        tracklet = np.full(self.batch_size, -1, np.int32)
        frame_index = np.full((self.batch_size, self.num_frames), -1, np.int32)
        for row, c in enumerate(rows):
            t = self.clips.tracklet[c]
            self.data.read_into(self.index.first[t] + self.clips.frames[c], clips[row])
            mask[row] = self.clips.mask[c]
            tracklet[row] = t
            frame_index[row] = self.clips.frames[c]
        batch = EvalBatch(clips=clips, frame_mask=mask, tracklet=tracklet)
        if self.debug:
            batch["frame_index"] = frame_index
        return batch


def eval_dataset(
    data: ReIDDataset,
    split: str | TrackletIndex,
    num_frames: int,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    sampler: str = "dense",
    debug: bool = False,
    padding: str = "repeat",
) -> grain.MapDataset:
    """This host's evaluation batches of `split` (`query` or `gallery`), in order, with the
    test clips of `sampler` (`dense` or `rrs`) and `padding` (see `eval_clips`)."""
    batches = EvalBatches(
        data, split, num_frames, batch_size, process_index, process_count, sampler, debug,
        padding,
    )  # fmt: skip
    return grain.MapDataset.range(len(batches)).map(batches)


WORKER_KINDS = ("auto", "threads", "processes")
# `auto` chooses processes from this many cores up: below it, the worker processes and the
# training process compete for too few cores (docs/benchmarks.md).
AUTO_PROCESSES_MIN_CORES = 8


def worker_kind(kind: str, cpus: int | None = None) -> str:
    """`threads` or `processes` for `kind` (one of `WORKER_KINDS`) on `cpus` cores."""
    if kind not in WORKER_KINDS:
        raise DataArgumentError(f"Unknown worker kind {kind!r}; valid: {list(WORKER_KINDS)}")
    if kind == "auto":
        cpus = cpus or os.cpu_count() or 1
        return "processes" if cpus >= AUTO_PROCESSES_MIN_CORES else "threads"
    return kind


def iterate(
    dataset: grain.MapDataset, workers: int, kind: str = "auto", prefetch: int = 4
) -> grain.IterDataset:
    """Iterates `dataset` in order with `workers` reader threads, or `workers` worker
    processes (spawned; batches reach this process through shared memory). 0 workers:
    in this thread. The elements are the same whatever the choice."""
    if workers <= 0:
        return dataset.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if worker_kind(kind) == "threads":
        return dataset.to_iter_dataset(
            grain.ReadOptions(num_threads=workers, prefetch_buffer_size=prefetch)
        )
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (defaults will do)
        flags.FLAGS.mark_as_parsed()
    per_worker = grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)
    return dataset.to_iter_dataset(per_worker).mp_prefetch(
        grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=prefetch),
    )


def to_device(
    batches: Iterable[dict[str, np.ndarray]], sharding: jax.sharding.Sharding, keys: Sequence[str]
) -> Iterator[dict[str, jax.Array]]:
    """This host's batches -> global `jax.Array`s of `keys`, split over `sharding`'s mesh
    along the batch axis (`jax.make_array_from_process_local_data`)."""
    for local in batches:
        yield {k: jax.make_array_from_process_local_data(sharding, local[k]) for k in keys}
