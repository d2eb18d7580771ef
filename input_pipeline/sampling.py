"""Identity sampling, temporal sampling and clip augmentation (SPEC §5).

Every random choice is drawn from a NumPy generator seeded by a tuple that starts with
(seed, step): a batch is a pure function of the step, whatever the worker count, and
resuming at step s reproduces the uninterrupted stream.
"""

from __future__ import annotations

import numpy as np

TRAIN_SAMPLERS = ("stride", "rrs", "evenly")
# Random erasing fills with the ImageNet mean (torchreid's RandomErasing), in uint8.
ERASE_FILL = np.array([0.4914, 0.4822, 0.4465]) * 255


class IdentitySampler:
    """P distinct identities × K tracklets per batch; an epoch is one pass over the ids.

    Args:
        pids: identity of every training tracklet `[N]`.
        ids_per_batch: P.
        clips_per_id: K; identities with fewer tracklets are sampled with replacement.
        seed: the data seed.

    Raises:
        ValueError: fewer identities than P.
    """

    def __init__(self, pids: np.ndarray, ids_per_batch: int, clips_per_id: int, seed: int):
        pids = np.asarray(pids)
        self.ids = np.unique(pids)
        if len(self.ids) < ids_per_batch:
            raise ValueError(
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
    num_frames: int, clip_len: int, sampler: str, rng: np.random.Generator, stride: int = 8
) -> np.ndarray:
    """Frame indices `[T]` of one training clip.

    `stride`: T frames `stride` apart from a random start; shorter tracklets: sorted random
    distinct frames, or with replacement when there are fewer than T. `rrs`: restricted
    random sampling, the tracklet cut into T equal chunks and one random frame from each.
    `evenly`: T frames evenly spaced, first and last included.
    """
    n, t = num_frames, clip_len
    if sampler == "stride":
        span = (t - 1) * stride + 1
        if n >= span:
            return rng.integers(0, n - span + 1) + stride * np.arange(t)
        return np.sort(rng.choice(n, t, replace=n < t))
    if sampler == "rrs":
        edges = np.floor(np.linspace(0, n, t + 1)).astype(int)
        lo = np.minimum(edges[:-1], n - 1)
        hi = np.maximum(edges[1:], lo + 1)
        return rng.integers(lo, hi)
    if sampler == "evenly":
        return np.round(np.linspace(0, n - 1, t)).astype(int)
    raise ValueError(f"Unknown temporal sampler {sampler!r}; valid: {list(TRAIN_SAMPLERS)}")


def dense_clips(num_frames: int, clip_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive test clips covering every frame once: indices `[C, T]` and mask `[C, T]`.

    The last clip is loop-padded (it wraps to the tracklet's start); its padded positions
    have mask False, so each frame is counted exactly once.
    """
    clips = -(-num_frames // clip_len)
    positions = np.arange(clips * clip_len).reshape(clips, clip_len)
    return positions % num_frames, positions < num_frames


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


def augment_clip(
    clip: np.ndarray, rng: np.random.Generator, flip_prob: float, erasing_prob: float
) -> np.ndarray:
    """Clip-consistent horizontal flip and random erasing of a uint8 clip `[T, H, W, 3]`:
    one decision and one box for all frames."""
    if rng.random() < flip_prob:
        clip = clip[:, :, ::-1]
    if rng.random() < erasing_prob:
        box = random_erasing_box(clip.shape[1], clip.shape[2], rng)
        if box is not None:
            top, left, h, w = box
            clip = clip.copy()
            clip[:, top : top + h, left : left + w] = ERASE_FILL.astype(np.uint8)
    return np.ascontiguousarray(clip)
