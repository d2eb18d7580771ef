"""LS-VID (Li et al., ICCV 2019) in its distributed layout.

    <root>/list_sequence/list_seq_train.txt   lines "<path prefix> <pid>"
    <root>/list_sequence/list_seq_test.txt
    <root>/test/data/info_test.mat            MATLAB v7.3 (HDF5): dataset `query`,
                                              1-based rows of list_seq_test.txt

A tracklet's frames are the files whose path starts with `<root>/<prefix>`, sorted. The
camera is the third `_`-separated field of the frame's file name (1-15). The gallery is
every test tracklet, the queries included.
"""

from __future__ import annotations

import os

import numpy as np

from input_pipeline.datasets.tracklets import (
    DatasetError,
    Splits,
    Tracklet,
    relabel,
    require_dir,
    require_file,
)

LISTS_HINT = "the LS-VID release (list_sequence/)"


def camera_of(path: str) -> int:
    """0-based camera: the third `_`-separated field of an LS-VID frame name."""
    fields = os.path.basename(path).split("_")
    if len(fields) < 3 or not fields[2].isdigit():
        raise DatasetError(f"LS-VID frame name without a camera field (third '_' field): {path}")
    return int(fields[2]) - 1


def _read_list(root: str, path: str, listing: dict) -> list[Tracklet]:
    out = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DatasetError(f"{path}:{number}: expected '<path prefix> <pid>', got {line!r}")
            prefix = os.path.join(root, parts[0])
            folder, stem = os.path.split(prefix)
            if folder not in listing:
                if not os.path.isdir(folder):
                    raise DatasetError(f"{path}:{number}: tracklet folder missing: {folder}")
                listing[folder] = sorted(os.listdir(folder))
            frames = [
                os.path.join(folder, name)
                for name in listing[folder]
                if name.startswith(stem) and name.lower().endswith((".jpg", ".jpeg", ".png"))
            ]
            if not frames:
                raise DatasetError(f"{path}:{number}: no frame matches {prefix}*")
            cameras = {camera_of(p) for p in frames}
            if len(cameras) != 1:
                raise DatasetError(f"{path}:{number}: tracklet {prefix}* mixes cameras")
            out.append(Tracklet(tuple(frames), int(parts[1]), cameras.pop()))
    return out


def _query_rows(path: str, num_test: int) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "query" not in f:
                raise DatasetError(f"{path} has no dataset 'query' (it has {sorted(f)})")
            rows = np.asarray(f["query"][()]).astype(np.int64).ravel() - 1
    except OSError as e:
        raise DatasetError(
            f"could not read {path} as MATLAB v7.3 (HDF5): {e}; it is the LS-VID "
            "test/data/info_test.mat"
        ) from e
    if rows.size == 0 or rows.min() < 0 or rows.max() >= num_test:
        raise DatasetError(f"{path}: 'query' must hold 1-based rows of the {num_test} test lines")
    return rows


def load(root: str) -> Splits:
    """Parses LS-VID at `root` (whole training tracklets; `config.dataset.dense_train` cuts
    them when the prepared data is opened)."""
    lists = require_dir(
        os.path.join(root, "list_sequence"), f"LS-VID tracklet lists ({LISTS_HINT})"
    )
    train_list = require_file(
        os.path.join(lists, "list_seq_train.txt"), f"LS-VID list ({LISTS_HINT})"
    )
    test_list = require_file(
        os.path.join(lists, "list_seq_test.txt"), f"LS-VID list ({LISTS_HINT})"
    )
    info = require_file(
        os.path.join(root, "test", "data", "info_test.mat"),
        "LS-VID query index (test/data/info_test.mat of the LS-VID release)",
    )
    listing: dict = {}
    train = _read_list(root, train_list, listing)
    test = _read_list(root, test_list, listing)
    query = [test[i] for i in _query_rows(info, len(test))]
    return Splits("LS-VID", relabel(train), query, test)
