"""Registry of the supported datasets and the metadata the models need.

The identity and camera counts are those of the published training splits; they size the
classifiers (and DSANet's camera classifier) before any data is read.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before reading it.

    Attributes:
        name: registry key.
        title: the dataset's usual name.
        num_train_ids: identities in the training split (classifier width).
        num_cameras: cameras (camera classifier width).
    """

    name: str
    title: str
    num_train_ids: int
    num_cameras: int


DATASETS = {
    "mars": DatasetInfo("mars", "MARS", 625, 6),
    "dukev": DatasetInfo("dukev", "DukeMTMC-VideoReID", 702, 8),
    "lsvid": DatasetInfo("lsvid", "LS-VID", 842, 15),
    # iLIDS-VID: 150 of the 300 people train in each of the 10 splits; 2 cameras.
    "ilidsvid": DatasetInfo("ilidsvid", "iLIDS-VID", 150, 2),
    # PRID2011: 100 of the 200 people seen by both cameras train in each of the 10 splits.
    "prid2011": DatasetInfo("prid2011", "PRID2011", 100, 2),
    # The built-in synthetic dataset at its defaults (200 ids, half of them training).
    "synthetic": DatasetInfo("synthetic", "synthetic", 100, 4),
}


# Datasets read from disk (the synthetic one is generated: input_pipeline/synthetic.py).
PARSERS = ("dukev", "folder", "ilidsvid", "lsvid", "mars", "prid2011")


def add_parser_arguments(parser) -> None:
    """The command-line options of the dataset parsers (`--dataset`, `--root`, ...)."""
    parser.add_argument("--dataset", required=True, choices=PARSERS)
    parser.add_argument("--root", required=True, help="the dataset folder as distributed")
    parser.add_argument("--split-id", type=int, default=0, help="iLIDS-VID/PRID2011 split (0-9)")
    parser.add_argument("--dense-train", type=int, default=0, help="cut training tracklets")
    parser.add_argument(
        "--no-query-in-gallery", action="store_true", help="MARS: the 9,330-tracklet gallery"
    )


def parser_options(args) -> dict:
    """The options of `args.dataset`'s parser from `add_parser_arguments`' arguments."""
    options = {}
    if args.dataset == "mars":
        options["query_in_gallery"] = not args.no_query_in_gallery
    if args.dataset in ("ilidsvid", "prid2011"):
        options["split_id"] = args.split_id
    if args.dataset in ("dukev", "lsvid", "ilidsvid"):
        options["dense_train"] = args.dense_train
    return options


def load_dataset(name: str, root: str, **options):
    """Parses dataset `name` at `root` into train/query/gallery `Splits`.

    Args:
        name: a `DATASETS` key.
        root: the dataset's folder in its distributed layout.
        **options: the parser's options (e.g. `query_in_gallery` for MARS, `split_id` and
            `dense_train` for iLIDS-VID).

    Raises:
        ValueError: an unknown name, listing the valid ones.
        DatasetError: a missing or malformed file, named.
    """
    from input_pipeline.datasets import dukev, folder, ilidsvid, lsvid, mars, prid2011

    loaders = {
        "mars": mars.load,
        "dukev": dukev.load,
        "lsvid": lsvid.load,
        "ilidsvid": ilidsvid.load,
        "prid2011": prid2011.load,
        "folder": folder.load,
    }
    if name not in loaders:
        raise ValueError(f"Unknown dataset {name!r}; valid: {list(PARSERS)}")
    return loaders[name](root, **options)


def dataset_info(name: str) -> DatasetInfo:
    """Returns the metadata of dataset `name`, or raises listing the valid names."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; valid: {sorted(DATASETS)}")
    return DATASETS[name]
