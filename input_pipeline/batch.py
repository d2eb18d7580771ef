"""What a batch holds, declared once: the training batch and the evaluation batch.

The pipelines (`input_pipeline.pipelines`) return these as plain dicts of NumPy arrays (what
grain's workers pass through shared memory); `to_device` moves exactly the declared model
fields. Fields that only tests and debugging read (`step`, `frame_index`) are added on
request (`debug=True`) and never leave the host.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np


class TrainBatch(TypedDict):
    """This host's slice of one global training batch (b clips).

    clips: uint8 `[b, T, H, W, 3]` as decoded; flip: bool `[b]` and erase: int32 `[b, 4]`
    (top, left, h, w; h = 0: none), the augmentation the train step applies on the device;
    labels: int32 `[b]` training identities; cameras: int32 `[b]` 0-based cameras.
    """

    clips: np.ndarray
    flip: np.ndarray
    erase: np.ndarray
    labels: np.ndarray
    cameras: np.ndarray


class EvalBatch(TypedDict):
    """A fixed-size batch of test clips (padding clips have tracklet -1).

    clips: uint8 `[B, T, H, W, 3]`; frame_mask: bool `[B, T]`, True where a frame counts;
    tracklet: int32 `[B]`, the clip's row in the split being embedded.
    """

    clips: np.ndarray
    frame_mask: np.ndarray
    tracklet: np.ndarray


TRAIN_FIELDS = tuple(TrainBatch.__annotations__)
EVAL_FIELDS = tuple(EvalBatch.__annotations__)
# debug=True adds, on the host only: training, `step` (int64, the global batch's step);
# evaluation, `frame_index` (int32 `[B, T]`, each frame's index in its tracklet; -1 for
# padding).


def train_batch_spec(b: int, t: int, h: int, w: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """`{field: (shape, dtype)}` of a `TrainBatch` of b clips of t frames of h×w."""
    return {
        "clips": ((b, t, h, w, 3), np.dtype(np.uint8)),
        "flip": ((b,), np.dtype(bool)),
        "erase": ((b, 4), np.dtype(np.int32)),
        "labels": ((b,), np.dtype(np.int32)),
        "cameras": ((b,), np.dtype(np.int32)),
    }


def eval_batch_spec(b: int, t: int, h: int, w: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """`{field: (shape, dtype)}` of an `EvalBatch` of b clips of t frames of h×w."""
    return {
        "clips": ((b, t, h, w, 3), np.dtype(np.uint8)),
        "frame_mask": ((b, t), np.dtype(bool)),
        "tracklet": ((b,), np.dtype(np.int32)),
    }
