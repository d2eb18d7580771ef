"""Tracklets and splits: what every dataset parser returns."""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from input_pipeline.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class Tracklet:
    """One tracklet: frame paths sorted by frame number, identity and 0-based camera."""

    frames: tuple[str, ...]
    pid: int
    camid: int


@dataclasses.dataclass
class Splits:
    """A dataset's train / query / gallery tracklets.

    Train pids are relabelled to 0..N-1 (sorted by original pid); query and gallery keep the
    dataset's ids (MARS distractors keep pid 0).
    """

    name: str
    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    # Camera names as the dataset writes them, by 0-based camid (None: the builder's rule).
    camera_names: list[str] | None = None

    @property
    def num_train_ids(self) -> int:
        return len({t.pid for t in self.train})

    def summary(self) -> str:
        """A table of ids, cameras, tracklets, frames and tracklet length (min/mean/max)
        per split (the table `python -m input_pipeline build` prints)."""
        rows = [f"{self.name}", "  split     ids  cams  tracklets     frames   len min/mean/max"]
        for split in ("train", "query", "gallery"):
            tracklets = getattr(self, split)
            lengths = np.array([len(t.frames) for t in tracklets] or [0])
            cams = len({t.camid for t in tracklets})
            rows.append(
                f"  {split:<7} {len({t.pid for t in tracklets}):>5} {cams:>5} {len(tracklets):>10} "
                f"{int(lengths.sum()):>10}   {lengths.min()}/{lengths.mean():.1f}/{lengths.max()}"
            )
        return "\n".join(rows)


def relabel(tracklets: list[Tracklet]) -> list[Tracklet]:
    """Maps the pids of a training split to 0..N-1, in sorted order of the original pids."""
    mapping = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [dataclasses.replace(t, pid=mapping[t.pid]) for t in tracklets]


def require_dir(path: str, what: str) -> str:
    """Returns `path` or raises a `DatasetError` naming it and where it comes from."""
    if not os.path.isdir(path):
        raise DatasetError(f"{what} not found: expected the folder {path}")
    return path


def require_file(path: str, what: str) -> str:
    """Returns `path` or raises a `DatasetError` naming it and where it comes from."""
    if not os.path.isfile(path):
        raise DatasetError(f"{what} not found: expected the file {path}")
    return path


_FRAME_NUMBER = re.compile(r"F(\d+)")


def frame_number(path: str) -> int:
    """The frame index of a MARS / Duke-V frame name: the digits after `F`."""
    match = _FRAME_NUMBER.search(os.path.basename(path))
    if match is None:
        raise DatasetError(f"frame name without an F<number> field: {path}")
    return int(match.group(1))


def list_images(folder: str, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png")) -> list[str]:
    """Image files directly in `folder`, unsorted."""
    with os.scandir(folder) as entries:
        return [e.path for e in entries if e.is_file() and e.name.lower().endswith(suffixes)]
