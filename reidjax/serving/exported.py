"""Run a model exported by `reidjax/serving/export.py`: needs jax, numpy and Pillow (and the
NumPy-only clip and frame rules of `input_pipeline.sampling` and `input_pipeline.frames`), no
model code.

    from reidjax.serving.exported import load

    model = load("model.bin")                       # any platform it was exported for
    features = model.embed([frames_a, paths_b])     # uint8 [L, h, w, 3] or image paths

The file holds a small JSON header (frame size, clip length, the test rule, the distance)
and the serialized `jax.export` of the per-clip feature function, StableHLO with the
parameters inside as constants. `embed` applies the run's test rule around it: dense
clips of T frames covering every frame once (the last padded as the run's
`input.test_padding` says, its padding not counted) or the `rrs` clip, clip features
averaged as the run's `eval.clip_weights` says (or, for a model that pools frames over the
whole tracklet, per-frame features weighted by exp of their log-weights over every real
frame), L2 normalised; the same as
`reidjax.serving.inference.Embedder` (tested to 1e-5). Frames are image paths or uint8 arrays of
any size, prepared as a dataset build would store them (`prepare_frame`).
"""

from __future__ import annotations

import dataclasses
import json
import struct

import jax
import numpy as np

from input_pipeline.frames import prepare_frame
from input_pipeline.sampling import dense_clips, rrs_test_indices

MAGIC = b"REIDJAX1"


@dataclasses.dataclass
class ExportedModel:
    """A deserialized export: `header` (metadata) and `exported` (`jax.export.Exported`)."""

    header: dict
    exported: jax.export.Exported

    @property
    def frame_size(self) -> tuple[int, int]:
        return tuple(self.header["frame_size"])

    @property
    def batch(self) -> int:
        return int(self.header["batch"])

    @property
    def frame_pooling(self) -> bool:
        """Whether the function gives per-frame (features, log-weights) (DSANet's FWG
        over whole tracklets) instead of one feature per clip."""
        return bool(self.header.get("frame_pooling", False))

    def clip_features(self, clips: np.ndarray):
        """Features `[n, D]` of uint8 clips `[n, T, H, W, 3]`, in fixed-size batches; with
        `frame_pooling`, `(features [n, T, D], log-weights [n, T])`."""
        b, out = self.batch, []
        for start in range(0, len(clips), b):
            chunk = clips[start : start + b]
            padded = np.zeros((b, *chunk.shape[1:]), np.uint8)
            padded[: len(chunk)] = chunk
            result = self.exported.call(padded)
            result = result if isinstance(result, tuple | list) else (result,)
            out.append([np.asarray(r)[: len(chunk)] for r in result])
        parts = [np.concatenate(p) for p in zip(*out, strict=True)]
        return tuple(parts) if self.frame_pooling else parts[0]

    def embed(self, tracklets) -> np.ndarray:
        """L2-normalised features `[N, D]` of tracklets, each a list of image paths or
        uint8 frames `[L, h, w, 3]` of any size (`input_pipeline.frames.prepare_frame`).

        Raises:
            ValueError: an empty tracklet, or a frame that cannot be read (named).
        """
        t = int(self.header["num_frames"])
        clips, owner, weight = [], [], []
        for i, frames in enumerate(tracklets):
            if len(frames) == 0:
                raise ValueError(f"tracklet {i} has no frames")
            frames = np.stack([prepare_frame(f, self.frame_size) for f in frames])
            # Exports written before these keys existed: the rules they were made with.
            padding = self.header.get("test_padding", "loop")
            by_frames = self.header.get("clip_weights", "frames") == "frames"
            for idx, mask in clip_indices(len(frames), t, self.header["test_sampler"], padding):
                clips.append(frames[idx])
                owner.append(i)
                weight.append(mask if self.frame_pooling else mask.sum() if by_frames else 1)
        if not clips:
            return np.zeros((0, self.header["dim"]), np.float32)
        owner = np.asarray(owner)
        if self.frame_pooling:
            feats, logw = (x.astype(np.float64) for x in self.clip_features(np.stack(clips)))
            real = np.stack(weight)
            logw = np.where(real, logw, -np.inf)
            top = np.full(len(tracklets), -np.inf)
            np.maximum.at(top, owner, logw.max(1))
            w = np.where(real, np.exp(logw - top[owner][:, None]), 0.0)
            weight = w.sum(1)  # each clip: its frames' weighted mean, with their mass
            feats = np.einsum("bt,btd->bd", w, feats) / np.maximum(weight, 1e-300)[:, None]
        else:
            feats = self.clip_features(np.stack(clips)).astype(np.float64)
            weight = np.asarray(weight, np.float64)
        sums = np.zeros((len(tracklets), feats.shape[1]))
        np.add.at(sums, owner, feats * weight[:, None])
        counts = np.bincount(owner, weights=weight, minlength=len(tracklets))
        mean = sums / np.maximum(counts, 1e-12)[:, None]
        norm = np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return (mean / norm).astype(np.float32)


def clip_indices(n: int, t: int, sampler: str, padding: str = "repeat"):
    """(frame indices [T], counted mask [T]) of each test clip of an n-frame tracklet: the
    evaluator's own rules (`input_pipeline.sampling`, NumPy only)."""
    if sampler == "rrs":
        yield rrs_test_indices(n, t), np.ones(t, bool)
        return
    yield from zip(*dense_clips(n, t, padding), strict=True)


def write(path: str, header: dict, serialized: bytes) -> None:
    """The file format: MAGIC, header length (uint64), JSON header, serialized export."""
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(blob)) + blob + serialized)


def load(path: str) -> ExportedModel:
    """Reads a file written by `reidjax/serving/export.py`."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not a reidjax export (no {MAGIC!r} header)")
    (size,) = struct.unpack("<Q", data[len(MAGIC) : len(MAGIC) + 8])
    start = len(MAGIC) + 8
    header = json.loads(data[start : start + size])
    exported = jax.export.deserialize(bytearray(data[start + size :]))
    return ExportedModel(header, exported)
