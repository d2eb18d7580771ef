"""Prepare a dataset once: its tensorflow-datasets builder writes ArrayRecord files.

The library half of `python -m input_pipeline build` (`input_pipeline/__main__.py`). Frames are
stored as JPEG at the builder config's size: an RGB JPEG already at that size byte for byte,
others resized (bicubic) and encoded at quality 95. Every frame is decoded once on the way,
over all cores; a corrupt one stops the build naming the file, and nothing half-written is
left (TFDS writes to a temporary folder and renames it at the end).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

import numpy as np
from absl import logging as absl_logging

from input_pipeline import registry
from input_pipeline.builders import SPLITS, ReIDConfig
from input_pipeline.errors import DatasetError
from input_pipeline.records import DEFAULT_DATA_DIR, ReIDDataset


def build_dataset(
    name: str,
    config: str,
    data_dir: str = DEFAULT_DATA_DIR,
    manual_dir: str | None = None,
    *,
    workers: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
) -> ReIDDataset:
    """Prepares builder config `config` of dataset `name` in `data_dir`; returns it opened.

    Raises:
        DatasetError: no `manual_dir` for a dataset that needs one, a missing or malformed
            file in it, or a corrupt image (named).
    """
    import tensorflow_datasets as tfds

    cls = registry.get(name).builder_class()
    data_dir = os.path.expanduser(data_dir)
    if cls.MANUAL_DOWNLOAD_INSTRUCTIONS:
        if not manual_dir or not os.path.isdir(os.path.expanduser(manual_dir)):
            raise DatasetError(
                f"{name} needs --manual_dir, the dataset folder as distributed "
                f"({'not found: ' + manual_dir if manual_dir else 'not given'}): "
                f"{' '.join(cls.MANUAL_DOWNLOAD_INSTRUCTIONS.split())}"
            )
        manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    known = {c.name: c for c in cls.BUILDER_CONFIGS}
    mode = tfds.download.GenerateMode
    download_config = tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        download_mode=mode.REUSE_DATASET_IF_EXISTS if not overwrite else mode.FORCE_REDOWNLOAD,
    )
    verbosity = absl_logging.get_verbosity()
    if quiet:  # no TFDS log lines (e.g. inside a training run's log)
        absl_logging.set_verbosity(absl_logging.ERROR)
    # Progress bars on a terminal only: in a log file they are escape codes and carriage
    # returns.
    tfds.display_progress_bar(not quiet and sys.stderr.isatty())
    try:
        builder = cls(
            config=known.get(config) or ReIDConfig.parse(config),
            data_dir=data_dir,
            file_format="array_record",
        )
        builder.workers = workers
        # TFDS prints "Downloading and preparing dataset Unknown size ..." (nothing is
        # downloaded) and "... Subsequent calls will reuse this data": the callers say
        # what was built and where.
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(download_config=download_config)
    finally:
        absl_logging.set_verbosity(verbosity)
        tfds.display_progress_bar(True)
    return ReIDDataset(name, config, data_dir)


def summary(data: ReIDDataset) -> tuple[str, dict]:
    """The table of each split (ids, cameras, tracklets, frames, tracklet length
    min/mean/max) and the counts as a dict."""
    rows = [
        f"{data.manifest['name']}  ({data.directory})",
        "  split     ids  cams  tracklets     frames   len min/mean/max",
    ]
    counts = {}
    for split in SPLITS:
        index = data.splits[split]
        n = index.count if len(index) else np.zeros(1, np.int64)
        counts[split] = {
            "tracklets": len(index),
            "ids": len(np.unique(index.pid)),
            "frames": int(index.count.sum()),
        }
        rows.append(
            f"  {split:<7} {counts[split]['ids']:>5} {len(np.unique(index.camid)):>5} "
            f"{len(index):>10} {counts[split]['frames']:>10}   "
            f"{n.min()}/{n.mean():.1f}/{n.max()}"
        )
    return "\n".join(rows), counts
