"""The data command: check a download, then prepare it once for training and evaluation.

    python -m input_pipeline inspect --dataset mars --manual_dir /data/MARS
    python -m input_pipeline build --dataset mars --manual_dir /data/MARS
    python -m input_pipeline build --dataset ilidsvid --manual_dir /data/iLIDS-VID   # all 10 splits
    python -m input_pipeline build --dataset folder --name shop --manual_dir /data/shop
    python -m input_pipeline build --dataset synthetic --size 128x64

`inspect` parses the dataset in its distributed layout (docs/data.md) and prints its
summary table: the counts must match the published ones (MARS: 625 training ids / 8,298
tracklets; 1,980 queries; 11,310 gallery tracklets). `build` runs its tensorflow-datasets
builder into `--data_dir` (default ~/tensorflow_datasets, where `config.dataset.data_dir`
looks), frames at `--size` (default 256x128), prints the summary of each split and, as the
last line, one JSON object: {"train": {"tracklets", "ids", "frames"}, "query": ...,
"gallery": ...}, the gallery as the protocol uses it (MARS: queries included). Exit status
0, or 1 with one `error:` line.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

from input_pipeline import registry
from input_pipeline.builders import config_name
from input_pipeline.errors import DataError, DatasetError
from input_pipeline.records import DEFAULT_DATA_DIR, dataset_dir

COMMANDS = ("build", "inspect")

_DATASET = flags.DEFINE_enum("dataset", None, sorted(registry.DATASETS), "The dataset.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "The dataset folder as distributed.")
_DATA_DIR = flags.DEFINE_string("data_dir", DEFAULT_DATA_DIR, "tensorflow-datasets data dir.")
_SIZE = flags.DEFINE_string("size", "256x128", "build: frame size HxW.")
_SPLIT = flags.DEFINE_integer(
    "split", 0, "inspect, iLIDS-VID / PRID2011: which of the ten train/test splits (0-9)."
)
_NAME = flags.DEFINE_string("name", "", "folder datasets: your dataset's name.")
_NO_QUERY_IN_GALLERY = flags.DEFINE_bool(
    "no_query_in_gallery", False, "inspect, MARS: the 9,330-tracklet gallery."
)
_IDS = flags.DEFINE_integer("ids", 200, "synthetic: identities.")
_CAMERAS = flags.DEFINE_integer("cameras", 4, "synthetic: cameras.")
_SEED = flags.DEFINE_integer("seed", 0, "synthetic: seed.")
_WORKERS = flags.DEFINE_integer("workers", 0, "build: processes (0: all cores).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "build: build again if present.")
flags.mark_flag_as_required("dataset")


def parse_size(text: str) -> tuple[int, int]:
    """`HxW` -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DatasetError(f"--size must be HxW (e.g. 256x128), got {text!r}") from None
    return h, w


def config_names(spec: registry.DatasetSpec, size: tuple[int, int]) -> list[str]:
    """The builder config the flags ask for (a list: one name per config built)."""
    if spec.name == "synthetic":
        from input_pipeline.builders.reid_synthetic.reid_synthetic_dataset_builder import (
            synthetic_config,
        )

        return [synthetic_config(_IDS.value, _CAMERAS.value, _SEED.value, size)]
    if spec.name == "folder":
        name = _NAME.value
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise DatasetError("--dataset folder needs --name NAME (letters, digits, _)")
        return [config_name(size, prefix=name.lower())]
    return [config_name(size)]  # ten train/test splits, if any, are in the one config


def inspect(spec: registry.DatasetSpec) -> None:
    """Parses the distributed layout and prints the summary table."""
    if not _MANUAL_DIR.value:
        raise DatasetError("inspect needs --manual_dir, the dataset folder as distributed")
    asked = {
        "query_in_gallery": not _NO_QUERY_IN_GALLERY.value,
        "split_id": _SPLIT.value,
        "name": _NAME.value,
    }
    options = {k: v for k, v in asked.items() if k in spec.options}
    print(spec.load(_MANUAL_DIR.value, **options).summary())


def build(spec: registry.DatasetSpec) -> None:
    """Builds every config asked for; prints each summary, then the counts as JSON."""
    from input_pipeline.build import build_dataset, summary  # imports tensorflow-datasets

    counts = {}
    for name in config_names(spec, parse_size(_SIZE.value)):
        info = os.path.join(dataset_dir(spec.name, name, _DATA_DIR.value), "dataset_info.json")
        exists = os.path.isfile(info)
        data = build_dataset(
            spec.name,
            name,
            _DATA_DIR.value,
            _MANUAL_DIR.value,
            workers=_WORKERS.value,
            overwrite=_OVERWRITE.value,
        )
        table, counts = summary(data)
        print(("already prepared, kept: " if exists and not _OVERWRITE.value else "") + table)
    print(json.dumps(counts))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"give one command: {' | '.join(COMMANDS)}")
    spec = registry.get(_DATASET.value)
    try:
        (build if argv[1] == "build" else inspect)(spec)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flags parser, with `--help` exiting 0 (absl's own exits 1), an unknown or
    malformed flag as one `error:` line and exit status 1, and logging at WARNING unless
    `--verbosity` is given."""
    asked = {"--help", "-h", "-?", "--helpshort", "--helpfull"} & set(argv[1:])
    if asked:
        flags.FLAGS.mark_as_parsed()
        app.usage(shorthelp="--helpfull" not in asked, writeto_stdout=True, exitcode=0)
    try:
        remaining = flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e} (see python -m input_pipeline --help)", file=sys.stderr)
        sys.exit(1)
    if not flags.FLAGS["verbosity"].present:  # the command's own lines, not TFDS's INFO
        logging.set_verbosity(logging.WARNING)
    return remaining


def run() -> None:
    """The console command `reidjax-data` (`[project.scripts]` in pyproject.toml)."""
    sys.exit(app.run(main, flags_parser=parse_flags))


if __name__ == "__main__":
    run()
