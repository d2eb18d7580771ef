"""Prepare a dataset once: its tensorflow-datasets builder writes ArrayRecord files.

    python -m input_pipeline.build --dataset mars --manual_dir /data/MARS
    python -m input_pipeline.build --dataset ilidsvid --manual_dir /data/iLIDS-VID --split all
    python -m input_pipeline.build --dataset folder --name shop --manual_dir /data/shop
    python -m input_pipeline.build --dataset synthetic --size 128x64

`--manual_dir` is the dataset as distributed (its layout: docs/data.md); `--data_dir`
defaults to ~/tensorflow_datasets, where `config.dataset.data_dir` looks. Frames are stored
as JPEG at `--size` (default 256x128): an RGB JPEG already at that size byte for byte,
others resized (bicubic) and encoded at quality 95. Every frame is decoded once on the way,
over all cores; a corrupt one stops the build naming the file, and nothing half-written is
left (TFDS writes to a temporary folder and renames it at the end). The same builders run
under `tfds build` (docs/data.md). Prints the summary table of each split and, as the last
line, one JSON object: {"train": {"tracklets", "ids", "frames"}, "query": ..., "gallery":
...}, the gallery as the protocol uses it (MARS: queries included).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import sys

import numpy as np
from absl import logging as absl_logging

from input_pipeline.builders import (
    SPLIT_DATASETS,
    SPLITS,
    TFDS_NAMES,
    ReIDConfig,
    config_name,
)
from input_pipeline.datasets import ilidsvid
from input_pipeline.datasets.tracklets import DatasetError
from input_pipeline.records import DEFAULT_DATA_DIR, ReIDDataset, dataset_dir

NUM_SPLITS = ilidsvid.NUM_SPLITS  # iLIDS-VID and PRID2011 both have ten


def builder_class(name: str):
    """The TFDS builder class of dataset `name` (a `TFDS_NAMES` key)."""
    if name not in TFDS_NAMES:
        raise DatasetError(f"Unknown dataset {name!r}; valid: {sorted(TFDS_NAMES)}")
    module = TFDS_NAMES[name]
    return importlib.import_module(
        f"input_pipeline.builders.{module}.{module}_dataset_builder"
    ).Builder


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

    cls = builder_class(name)
    data_dir = os.path.expanduser(data_dir)
    if cls.MANUAL_DOWNLOAD_INSTRUCTIONS:
        if not manual_dir or not os.path.isdir(os.path.expanduser(manual_dir)):
            raise DatasetError(
                f"{name} needs --manual_dir, the dataset folder as distributed "
                f"({'not found: ' + manual_dir if manual_dir else 'not given'}):"
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
    if quiet:  # no progress bars or TFDS log lines (e.g. inside a training run's log)
        absl_logging.set_verbosity(absl_logging.ERROR)
        tfds.display_progress_bar(False)
    try:
        builder = cls(
            config=known.get(config) or ReIDConfig.parse(config),
            data_dir=data_dir,
            file_format="array_record",
        )
        builder.workers = workers
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            builder.download_and_prepare(download_config=download_config)
    finally:
        if quiet:
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


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must be HxW (e.g. 256x128), got {text!r}") from e
    return h, w


def config_names(args) -> list[str]:
    """The builder configs the arguments ask for."""
    if args.dataset == "synthetic":
        from input_pipeline.builders.reid_synthetic.reid_synthetic_dataset_builder import (
            synthetic_config,
        )

        return [synthetic_config(args.ids, args.cameras, args.seed, args.size)]
    if args.dataset == "folder":
        if not args.name or not all(c.isalnum() or c == "_" for c in args.name):
            raise DatasetError("--dataset folder needs --name NAME (letters, digits, _)")
        return [config_name(args.size, prefix=args.name.lower())]
    if args.dataset in SPLIT_DATASETS:
        splits = range(NUM_SPLITS) if args.split == "all" else [int(args.split)]
        return [config_name(args.size, k) for k in splits]
    return [config_name(args.size)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, choices=sorted(TFDS_NAMES))
    parser.add_argument("--manual_dir", help="the dataset folder as distributed")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR, help="TFDS data dir")
    parser.add_argument("--size", type=parse_size, default=(256, 128), help="HxW")
    parser.add_argument("--split", default="0", help="iLIDS-VID / PRID2011: 0-9 or all")
    parser.add_argument("--name", default="", help="folder datasets: your dataset's name")
    parser.add_argument("--ids", type=int, default=200, help="synthetic: identities")
    parser.add_argument("--cameras", type=int, default=4, help="synthetic: cameras")
    parser.add_argument("--seed", type=int, default=0, help="synthetic: seed")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="build again if present")
    args = parser.parse_args(argv)
    if args.split != "all" and not args.split.isdigit():
        parser.error(f"--split must be 0-9 or all, got {args.split!r}")
    try:
        counts = {}
        for name in config_names(args):
            exists = os.path.isfile(
                os.path.join(dataset_dir(args.dataset, name, args.data_dir), "dataset_info.json")
            )
            data = build_dataset(
                args.dataset,
                name,
                args.data_dir,
                args.manual_dir,
                workers=args.workers,
                overwrite=args.overwrite,
            )
            table, counts = summary(data)
            print(("already prepared, kept: " if exists and not args.overwrite else "") + table)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
