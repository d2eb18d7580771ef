"""Random access to an ingested dataset (`input_pipeline.ingest` output)."""

from __future__ import annotations

import dataclasses
import io
import json
import os

import numpy as np
from PIL import Image

from input_pipeline.datasets.tracklets import DatasetError

# The ingested format (written by `input_pipeline.ingest`).
FORMAT_VERSION = 1
SPLITS = ("train", "query", "gallery")
MANIFEST = "manifest.json"
INDEX = "tracklets.npz"


@dataclasses.dataclass(frozen=True)
class TrackletIndex:
    """The tracklets of one split: record range, pid and camera of each (arrays `[N]`)."""

    pid: np.ndarray
    camid: np.ndarray
    first: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.pid)


class IngestedDataset:
    """An ingested dataset: manifest, per-split tracklet index, and frame decoding.

    Args:
        directory: the `--out` folder of `python -m input_pipeline.ingest`.

    Raises:
        DatasetError: a missing folder (with the ingest command to run), or another format.
    """

    def __init__(self, directory: str):
        manifest_path = os.path.join(directory, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise DatasetError(
                f"no ingested dataset at {directory} (missing {MANIFEST}); create it with: "
                "python -m input_pipeline.ingest --dataset NAME --root DATASET_DIR "
                f"--out {directory}"
            )
        with open(manifest_path) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"{directory} has format version {self.manifest.get('format_version')}, this "
                f"reidjax reads {FORMAT_VERSION}: ingest it again"
            )
        self.directory = directory
        with np.load(os.path.join(directory, INDEX)) as index:
            index = {k: index[k] for k in index.files}
        self.splits = {}
        for split_id, split in enumerate(SPLITS):
            keep = index["split"] == split_id
            self.splits[split] = TrackletIndex(
                index["pid"][keep], index["camid"][keep], index["first"][keep], index["count"][keep]
            )
        self._source = None

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.manifest["size"])

    @property
    def source(self):
        """A grain `ArrayRecordDataSource` over every frame record (opened lazily, so the
        object can be sent to worker processes before first use)."""
        if self._source is None:
            import grain.python as grain

            paths = [os.path.join(self.directory, s) for s in self.manifest["shards"]]
            self._source = grain.ArrayRecordDataSource(paths)
        return self._source

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def frame(self, record: int) -> np.ndarray:
        """Decodes frame `record`: uint8 `[H, W, 3]`."""
        return decode(self.source[int(record)])

    def frames(self, records) -> np.ndarray:
        """Decodes several frames: uint8 `[N, H, W, 3]`."""
        return np.stack([self.frame(r) for r in records])


def decode(data: bytes) -> np.ndarray:
    """Encoded image bytes -> uint8 `[H, W, 3]` RGB."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode != "RGB":  # ingested JPEGs are RGB already: skip the copy
            image = image.convert("RGB")
        return np.asarray(image)
