"""Parses a dataset in its native layout and prints its summary table.

    python -m input_pipeline.datasets --dataset mars --root /data/MARS
    python -m input_pipeline.datasets --dataset ilidsvid --root /data/iLIDS-VID --split-id 3

Use it to check a download before ingesting it: the counts must match SPEC §4 (e.g. MARS:
625 training ids / 8,298 tracklets; 1,980 queries; 11,310 gallery tracklets).
"""

import argparse
import sys

from input_pipeline.datasets import DATASETS, load_dataset
from input_pipeline.datasets.tracklets import DatasetError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--root", required=True, help="the dataset folder as distributed")
    parser.add_argument("--split-id", type=int, default=0, help="iLIDS-VID split (0-9)")
    parser.add_argument("--dense-train", type=int, default=0, help="cut training tracklets")
    parser.add_argument(
        "--no-query-in-gallery", action="store_true", help="MARS: the 9,330-tracklet gallery"
    )
    args = parser.parse_args(argv)
    options = {}
    if args.dataset == "mars":
        options["query_in_gallery"] = not args.no_query_in_gallery
    if args.dataset == "ilidsvid":
        options["split_id"] = args.split_id
    if args.dataset in ("dukev", "lsvid", "ilidsvid"):
        options["dense_train"] = args.dense_train
    try:
        splits = load_dataset(args.dataset, args.root, **options)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(splits.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
