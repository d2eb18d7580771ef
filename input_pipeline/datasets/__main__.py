"""Parses a dataset in its native layout and prints its summary table.

    python -m input_pipeline.datasets --dataset mars --root /data/MARS
    python -m input_pipeline.datasets --dataset ilidsvid --root /data/iLIDS-VID --split-id 3

Use it to check a download before building it: the counts must match the published ones (e.g. MARS:
625 training ids / 8,298 tracklets; 1,980 queries; 11,310 gallery tracklets).
"""

import argparse
import sys

from input_pipeline.datasets import add_parser_arguments, load_dataset, parser_options
from input_pipeline.datasets.tracklets import DatasetError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_parser_arguments(parser)
    args = parser.parse_args(argv)
    try:
        splits = load_dataset(args.dataset, args.root, **parser_options(args))
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(splits.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
