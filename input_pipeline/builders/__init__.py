"""Video re-ID datasets as tensorflow-datasets builders (ArrayRecord, TensorFlow-free).

Every builder stores one split, `frames`: one example per frame, `image` (JPEG bytes at
the configured size) and `tracklet` (the row of the tracklet table it belongs to). The
tracklet table is dataset metadata (`metadata.json`, `info.metadata["tracklets"]`), one
column per field: `split` (0 train, 1 query, 2 gallery), `pid`, `camid` (0-based),
`first` (index of the tracklet's first frame in `frames`), `count` (frames) and `source`
(the first frame's path, relative to the manual dir). A tracklet listed in two splits
(MARS queries are gallery tracklets too) has a row in each and its frames stored once.
`DatasetInfo.disable_shuffling` is set: TFDS would
otherwise store the examples in the order of their hashed keys, not in the order they
were generated, and `first` would point at the wrong frames.

Builder configs are named `<H>x<W>` (the frame size), `split<K>_<H>x<W>` for datasets with
ten train/test splits (iLIDS-VID, PRID2011) and `<name>_<H>x<W>` for the folder builder;
`config_name` makes them. Build with `python -m input_pipeline build`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets.tracklets import Splits
from input_pipeline.errors import DatasetError
from input_pipeline.frames import JPEG_QUALITY, encode_array, encode_frame  # noqa: F401

SPLITS = ("train", "query", "gallery")
TABLE_FIELDS = ("split", "pid", "camid", "first", "count", "source", "fold")
FORMAT_VERSION = "1.0.0"
DEFAULT_SIZE = (256, 128)
# Sizes with a declared builder config (what `tfds build --config` can name); the
# `python -m input_pipeline build` form builds any size.
STANDARD_SIZES = (DEFAULT_SIZE, (128, 64))
_CONFIG_NAME = re.compile(r"^(?:(?P<prefix>[a-z0-9_]+)_)?(?P<h>\d+)x(?P<w>\d+)$")


def config_name(size: tuple[int, int], split: int | None = None, prefix: str | None = None) -> str:
    """The builder config of frames at `size`: `HxW`, `split3_HxW` or `<prefix>_HxW`."""
    h, w = size
    if split is not None:
        prefix = f"split{split}"
    return f"{prefix}_{h}x{w}" if prefix else f"{h}x{w}"


@dataclasses.dataclass(eq=False)
class ReIDConfig(tfds.core.BuilderConfig):
    """A builder config: frame size (H, W) and split (datasets with ten splits)."""

    size: tuple[int, int] = DEFAULT_SIZE
    split: int = 0

    @classmethod
    def parse(cls, name: str) -> ReIDConfig:
        """The config called `name` (see `config_name`)."""
        match = _CONFIG_NAME.match(name)
        if match is None:
            raise DatasetError(f"bad builder config {name!r}: expected HxW, splitK_HxW or NAME_HxW")
        prefix = match["prefix"] or ""
        split = int(prefix[5:]) if re.fullmatch(r"split\d+", prefix) else 0
        size = (int(match["h"]), int(match["w"]))
        return cls(name=name, size=size, split=split)


def _encode_job(args):
    return encode_frame(*args)


def worker_pool(workers: int | None):
    """A process pool for the builders, or None for one worker. Processes are spawned,
    never forked: the caller may have started JAX's threads."""
    workers = workers or os.cpu_count() or 1
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if workers <= 1 or (main_file and not os.path.exists(main_file)):
        return None  # a spawned worker re-imports __main__: impossible for `python -` (stdin)
    return multiprocessing.get_context("spawn").Pool(workers)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each tracklet's frames go in the `frames` split (generation order = stored
    order): the tracklet table and the frame paths in order."""

    table: list[dict]
    frames: list[tuple[int, str]]  # (tracklet row, path), in stored order

    @classmethod
    def of(cls, folds: Splits | Sequence[Splits], root: str = "") -> Layout:
        """The layout of one protocol (`Splits`) or of several train/test folds of the same
        frames (iLIDS-VID's and PRID2011's ten): each fold's rows carry its number, and a
        tracklet's frames are stored once whatever the folds and splits listing it."""
        folds = [folds] if isinstance(folds, Splits) else list(folds)
        owner: dict[tuple[str, ...], int] = {}
        table, frames = [], []
        for fold, splits in enumerate(folds):
            table, frames = cls._add(splits, fold, root, owner, table, frames)
        return cls(table, frames)

    @staticmethod
    def _add(splits: Splits, fold: int, root: str, owner: dict, table: list, frames: list):
        for split_id, split in enumerate(SPLITS):
            for tracklet in getattr(splits, split):
                row = len(table)
                if not tracklet.frames:
                    raise DatasetError(f"empty tracklet in {split} (pid {tracklet.pid})")
                if tracklet.frames not in owner:
                    owner[tracklet.frames] = len(frames)
                    frames += [(row, path) for path in tracklet.frames]
                source = tracklet.frames[0]
                if root:
                    source = os.path.relpath(source, root)
                table.append(
                    {
                        "split": split_id,
                        "pid": int(tracklet.pid),
                        "camid": int(tracklet.camid),
                        "first": owner[tracklet.frames],
                        "count": len(tracklet.frames),
                        "source": source,
                        "fold": fold,
                    }
                )
        return table, frames


class TrackletBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the reidjax builders: subclasses name the dataset and implement `splits`."""

    VERSION = tfds.core.Version(FORMAT_VERSION)
    RELEASE_NOTES = {
        FORMAT_VERSION: "Frames as JPEG at the config's size, plus the tracklet table."
    }
    BUILDER_CONFIG_CLASS = ReIDConfig
    BUILDER_CONFIGS = [ReIDConfig(name=config_name(size), size=size) for size in STANDARD_SIZES]
    TITLE = ""
    HOMEPAGE = ""
    CITATION = ""
    # Processes that validate and encode frames (0: every core).
    workers = 0

    def camera_name(self, camid: int) -> str:
        """Camera `camid` (0-based) as the dataset names it (MARS, Duke-V: C1...)."""
        return f"C{camid + 1}"

    def splits(self, manual_dir: str) -> Splits:
        """The dataset's train/query/gallery tracklets, parsed from `manual_dir`."""
        raise NotImplementedError

    def folds(self, manual_dir: str) -> list[Splits]:
        """Every train/test fold of the protocol (one, unless the dataset has several)."""
        return [self.splits(manual_dir)]

    def _info(self) -> tfds.core.DatasetInfo:
        h, w = self.builder_config.size
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.TITLE}: video person re-identification tracklets, frames at "
            f"{h}x{w} (JPEG), with the tracklet table of the standard protocol.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(h, w, 3), encoding_format="jpeg"),
                    "tracklet": np.int32,
                }
            ),
            metadata=tfds.core.MetadataDict(),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
            disable_shuffling=True,  # the tracklet table points at the generation order
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        manual_dir = str(dl_manager.manual_dir) if self.MANUAL_DOWNLOAD_INSTRUCTIONS else ""
        folds = self.folds(manual_dir)
        splits = folds[0]
        layout = Layout.of(folds, manual_dir)
        columns = {k: [row[k] for row in layout.table] for k in TABLE_FIELDS}
        self.info.metadata["tracklets"] = columns
        self.info.metadata["name"] = splits.name
        self.info.metadata["size"] = list(self.builder_config.size)
        cameras = 1 + max((row["camid"] for row in layout.table), default=0)
        self.info.metadata["camera_names"] = splits.camera_names or [
            self.camera_name(c) for c in range(cameras)
        ]
        return {"frames": self._generate_examples(layout)}

    def _generate_examples(self, layout: Layout):
        encoded = self.encoded_frames(layout)
        try:
            for i, ((row, path), (data, error)) in enumerate(
                zip(layout.frames, encoded, strict=True)
            ):
                if data is None:
                    raise DatasetError(f"corrupt or unreadable image {path}: {error}")
                yield i, {"image": data, "tracklet": row}
        finally:
            encoded.close()

    def encoded_frames(self, layout: Layout) -> Iterator[tuple[bytes | None, str]]:
        """`encode_frame` of every frame of `layout`, in order, over `workers` processes."""
        size = self.builder_config.size
        pool = worker_pool(self.workers)
        try:
            jobs = ((path, size) for _, path in layout.frames)
            yield from (
                pool.imap(_encode_job, jobs, chunksize=32) if pool else map(_encode_job, jobs)
            )
        finally:
            if pool is not None:
                pool.terminate()
