"""Identity sampling, temporal sampling and clip augmentation.

Every random choice is drawn from a NumPy generator seeded by a tuple that starts with
(seed, step): a batch is a pure function of the step, whatever the worker count, and
resuming at step s reproduces the uninterrupted stream.
"""

from __future__ import annotations

import numpy as np

from input_pipeline.errors import DataArgumentError

TRAIN_SAMPLERS = ("stride", "rrs", "evenly")
# When a "stride" clip is strided: "lineage" from T·stride frames (AP3D's
# TemporalRandomCrop), "span" from the (T−1)·stride + 1 frames the clip spans.
STRIDE_THRESHOLDS = ("lineage", "span")
TEST_SAMPLERS = ("dense", "rrs")
# How a "dense" tracklet's last, short clip is filled: "repeat" cycles through its own
# frames (TCLNet's `extract`), "loop" wraps to the tracklet's start.
TEST_PADDINGS = ("repeat", "loop")
# How a tracklet's clip features are averaged: "frames" weights each clip by its real
# frames (a mean over frames, as AP3D's over all frames), "clips" counts each clip once
# (TCLNet's mean over clips).
CLIP_WEIGHTS = ("frames", "clips")
# Random erasing fills with (0.4914, 0.4822, 0.4465): the CIFAR-10 mean, the default of Zhong
# et al.'s RandomErasing (torchreid applies it to normalised tensors; AP3D has no erasing).
# Here it fills the uint8 frames (docs/fidelity.md row 15).
ERASE_FILL = np.array([0.4914, 0.4822, 0.4465]) * 255
# Batch samplers: "tracklets" (an epoch is one pass over the tracklets, AP3D's
# RandomIdentitySampler; the default) or "identities" (P distinct ids per batch, an epoch is
# one pass over the identities).
BATCH_SAMPLERS = ("tracklets", "identities")


class TrackletChunkSampler:
    """The lineage sampler (AP3D `tools/samplers.py`): an epoch is one pass over tracklets.

    Each epoch, every identity's tracklets are shuffled and cut into chunks of K (an
    identity with fewer than K tracklets gets K drawn with replacement; a remainder of
    fewer than K is dropped), the chunk list is shuffled, and batch i of the epoch is chunks
    [i·P, (i+1)·P): P chunks of K clips. An identity may appear in two chunks of one batch,
    as in AP3D. Steps per epoch = ⌊Σ_id (max(n_id, K) − max(n_id, K) mod K) / (P·K)⌋
    (PyTorch's `drop_last=True`).

    Args:
        pids: identity of every training tracklet `[N]`.
        ids_per_batch: P (chunks per batch).
        clips_per_id: K.
        seed: the data seed; epoch e's order is drawn from (seed, 0, e).

    Raises:
        DataArgumentError: fewer chunks than one batch.
    """

    def __init__(self, pids: np.ndarray, ids_per_batch: int, clips_per_id: int, seed: int):
        pids = np.asarray(pids)
        self.ids = np.unique(pids)
        self.by_id = [np.flatnonzero(pids == pid) for pid in self.ids]
        self.p, self.k, self.seed = ids_per_batch, clips_per_id, seed
        padded = [max(len(t), self.k) for t in self.by_id]
        self.num_chunks = sum(n // self.k for n in padded)
        self.steps_per_epoch = self.num_chunks // self.p
        if self.steps_per_epoch < 1:
            raise DataArgumentError(
                f"{len(pids)} training tracklets make {self.num_chunks} chunks of "
                f"{self.k}: fewer than one batch of {self.p}"
            )
        self._cache = None  # (epoch, chunks), replaced whole: safe for reader threads

    def epoch_chunks(self, epoch: int) -> np.ndarray:
        """The shuffled chunk list of `epoch`: tracklet indices `[num_chunks, K]`."""
        cached = self._cache
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng([self.seed, 0, epoch])
            chunks = []
            for tracklets in self.by_id:
                if len(tracklets) < self.k:
                    tracklets = rng.choice(tracklets, self.k, replace=True)
                tracklets = rng.permutation(tracklets)
                usable = len(tracklets) - len(tracklets) % self.k
                chunks.append(tracklets[:usable].reshape(-1, self.k))
            chunks = np.concatenate(chunks)
            cached = (epoch, chunks[rng.permutation(len(chunks))])
            self._cache = cached
        return cached[1]

    def batch(self, step: int) -> np.ndarray:
        """Tracklet indices of global batch `step`: `[P·K]`, chunk-major."""
        epoch, position = divmod(step, self.steps_per_epoch)
        return self.epoch_chunks(epoch)[position * self.p : (position + 1) * self.p].reshape(-1)


class IdentitySampler:
    """P distinct identities × K tracklets per batch; an epoch is one pass over the ids
    (`batch_sampler="identities"`).

    Args:
        pids: identity of every training tracklet `[N]`.
        ids_per_batch: P.
        clips_per_id: K; identities with fewer tracklets are sampled with replacement.
        seed: the data seed.

    Raises:
        DataArgumentError: fewer identities than P.
    """

    def __init__(self, pids: np.ndarray, ids_per_batch: int, clips_per_id: int, seed: int):
        pids = np.asarray(pids)
        self.ids = np.unique(pids)
        if len(self.ids) < ids_per_batch:
            raise DataArgumentError(
                f"{len(self.ids)} training identities cannot fill {ids_per_batch} per batch"
            )
        self.by_id = {pid: np.flatnonzero(pids == pid) for pid in self.ids}
        self.p, self.k, self.seed = ids_per_batch, clips_per_id, seed
        self.steps_per_epoch = len(self.ids) // ids_per_batch

    def batch(self, step: int) -> np.ndarray:
        """Tracklet indices of global batch `step`: `[P·K]`, identity-major."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, 0, epoch]).permutation(len(self.ids))
        chosen = self.ids[order[position * self.p : (position + 1) * self.p]]
        rng = np.random.default_rng([self.seed, 1, step])
        out = []
        for pid in chosen:
            pool = self.by_id[pid]
            out.append(rng.choice(pool, self.k, replace=len(pool) < self.k))
        return np.concatenate(out)


def temporal_indices(
    num_frames: int,
    clip_len: int,
    sampler: str,
    rng: np.random.Generator,
    stride: int = 8,
    threshold: str = "lineage",
) -> np.ndarray:
    """Frame indices `[T]` of one training clip.

    `stride`: T frames `stride` apart from a random start, for tracklets of at least
    T·stride frames (`threshold="lineage"`, AP3D's `TemporalRandomCrop`) or of at least the
    (T−1)·stride + 1 frames the clip spans (`"span"`); shorter tracklets: sorted random
    distinct frames, or with replacement when there are fewer than T. `rrs`: restricted
    random sampling, the tracklet cut into T equal chunks and one random frame from each.
    `evenly`: T frames evenly spaced, first and last included.
    """
    n, t = num_frames, clip_len
    if sampler == "stride":
        if threshold not in STRIDE_THRESHOLDS:
            raise DataArgumentError(
                f"Unknown stride threshold {threshold!r}; valid: {STRIDE_THRESHOLDS}"
            )
        span = (t - 1) * stride + 1
        if n >= (t * stride if threshold == "lineage" else span):
            return rng.integers(0, n - span + 1) + stride * np.arange(t)
        return np.sort(rng.choice(n, t, replace=n < t))
    if sampler == "rrs":
        edges = np.floor(np.linspace(0, n, t + 1)).astype(int)
        lo = np.minimum(edges[:-1], n - 1)
        hi = np.maximum(edges[1:], lo + 1)
        return rng.integers(lo, hi)
    if sampler == "evenly":
        return np.round(np.linspace(0, n - 1, t)).astype(int)
    raise DataArgumentError(f"Unknown temporal sampler {sampler!r}; valid: {list(TRAIN_SAMPLERS)}")


def rrs_test_indices(num_frames: int, clip_len: int) -> np.ndarray:
    """The one deterministic restricted-random-sampling test clip of a tracklet `[T]`: the
    first frame of each of T equal chunks (the lineage's `TemporalRestrictedBeginCrop`;
    chunk size ⌊n/T⌋). A tracklet shorter than T is padded with its last frame first."""
    n = max(num_frames, clip_len)
    block = n // clip_len
    return np.minimum(np.arange(clip_len) * block, num_frames - 1)


def make_batch_sampler(
    name: str, pids: np.ndarray, ids_per_batch: int, clips_per_id: int, seed: int
) -> TrackletChunkSampler | IdentitySampler:
    """The batch sampler called `name` (one of `BATCH_SAMPLERS`)."""
    if name == "tracklets":
        return TrackletChunkSampler(pids, ids_per_batch, clips_per_id, seed)
    if name == "identities":
        return IdentitySampler(pids, ids_per_batch, clips_per_id, seed)
    raise DataArgumentError(f"Unknown batch sampler {name!r}; valid: {list(BATCH_SAMPLERS)}")


def dense_clips(
    num_frames: int, clip_len: int, padding: str = "repeat"
) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive test clips covering every frame once: indices `[C, T]` and mask `[C, T]`.

    A last clip shorter than T is padded (`TEST_PADDINGS`): `repeat` cycles through its own
    frames (frames 4, 5 of a 6-frame tracklet with T = 4 give 4, 5, 4, 5), `loop` wraps to
    the tracklet's start (4, 5, 0, 1). Padded positions have mask False, so each frame is
    counted exactly once.
    """
    if padding not in TEST_PADDINGS:
        raise DataArgumentError(f"Unknown test padding {padding!r}; valid: {list(TEST_PADDINGS)}")
    clips = -(-num_frames // clip_len)
    positions = np.arange(clips * clip_len).reshape(clips, clip_len)
    mask = positions < num_frames
    if padding == "loop":
        return positions % num_frames, mask
    start = positions[:, :1]
    real = np.minimum(num_frames - start, clip_len)  # real frames per clip [C, 1]
    return start + (positions - start) % real, mask


def random_erasing_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: float = 0.3,
) -> tuple[int, int, int, int] | None:
    """A random-erasing box (top, left, h, w), as torchreid's `RandomErasing`; None when 100
    attempts found none that fits."""
    for _ in range(100):
        target = rng.uniform(*area) * height * width
        ratio = rng.uniform(aspect, 1 / aspect)
        h = round(float(np.sqrt(target * ratio)))
        w = round(float(np.sqrt(target / ratio)))
        if 0 < h < height and 0 < w < width:
            return int(rng.integers(0, height - h)), int(rng.integers(0, width - w)), h, w
    return None


def augment_params(
    rng: np.random.Generator, height: int, width: int, flip_prob: float, erasing_prob: float
) -> tuple[bool, np.ndarray]:
    """One clip's augmentation: flip or not, and the erasing box (top, left, h, w), all 0
    when nothing is erased. The draws are those `augment_clip` makes, in its order."""
    flip = bool(rng.random() < flip_prob)
    box = np.zeros(4, np.int32)
    if rng.random() < erasing_prob:
        found = random_erasing_box(height, width, rng)
        if found is not None:
            box[:] = found
    return flip, box


def augment_clip(
    clip: np.ndarray, rng: np.random.Generator, flip_prob: float, erasing_prob: float
) -> np.ndarray:
    """Clip-consistent horizontal flip and random erasing of a uint8 clip `[T, H, W, 3]`:
    one decision and one box for all frames. Returns a new array (NumPy reference of
    `apply_augmentation`, which training uses)."""
    flip, (top, left, h, w) = augment_params(
        rng, clip.shape[1], clip.shape[2], flip_prob, erasing_prob
    )
    clip = np.array(clip[:, :, ::-1] if flip else clip)
    clip[:, top : top + h, left : left + w] = ERASE_FILL.astype(np.uint8)
    return clip
