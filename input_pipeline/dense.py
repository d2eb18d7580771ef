"""Dense training splits: long training tracklets cut into pieces when the data is opened.

The lineage code (AP3D `tools/data_manager.py`, used by its `train.py` for every dataset but
MARS) does not train on whole tracklets: it cuts each one into pieces and the identity
sampler, the epoch and the temporal sampler all see the pieces as training tracklets. Two
rules, one per dataset:

- DukeMTMC-VideoReID (`_process_dir_dense`, step 64): `n // 64` consecutive pieces
  `[i*64 : (i+1)*64]`, the last one running to the tracklet's end (the remainder joins it);
  a tracklet under 64 frames stays whole. LS-VID is cut the same way by the same group's
  later code base (BiCnet-TKS `data_manager/lsvid.py`, step 64).
- iLIDS-VID (`_process_train_data`, step 32): `n // 32` overlapping windows
  `[i*32 : (i+2)*32]`, the last one running to the end; under 32 frames: whole.

Both are one rule with a `step` and a `span` (pieces of `span * step` frames starting every
`step` frames). The cut reads only the stored tracklet table (first frame, frame count), so
switching `config.dataset.dense_train` needs no rebuild.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class DenseRule:
    """Pieces of `span * step` frames starting every `step` frames; the last piece of a
    tracklet runs to its end, and a tracklet shorter than `step` frames stays whole."""

    step: int
    span: int = 1

    def __post_init__(self):
        if self.step < 1 or self.span < 1:
            raise ValueError(f"a dense rule needs step >= 1 and span >= 1, got {self}")

    def describe(self) -> str:
        if self.span == 1:
            return f"consecutive pieces of {self.step} frames, the remainder joining the last"
        return (
            f"windows of {self.span * self.step} frames every {self.step} frames, "
            "the last running to the end"
        )

    def cut(self, index: Any) -> Any:
        """The pieces of every tracklet of `index` (a `input_pipeline.records.TrackletIndex`;
        not imported: the registry imports this module, and records imports the registry),
        in order; a piece keeps its tracklet's identity, camera and source path."""
        count = np.asarray(index.count, np.int64)
        pieces = np.maximum(count // self.step, 1)  # per tracklet
        owner = np.repeat(np.arange(len(count)), pieces)
        # Position of each piece within its tracklet: 0, 1, ..., pieces - 1.
        starts = np.cumsum(pieces) - pieces
        j = np.arange(len(owner)) - np.repeat(starts, pieces)
        offset = j * self.step
        last = j == pieces[owner] - 1
        length = np.where(last, count[owner] - offset, self.span * self.step)
        return dataclasses.replace(
            index,
            pid=np.asarray(index.pid)[owner],
            camid=np.asarray(index.camid)[owner],
            first=np.asarray(index.first)[owner] + offset,
            count=length,
            source=tuple(index.source[k] for k in owner) if index.source else (),
        )
