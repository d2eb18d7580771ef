"""MARS (Zheng et al., ECCV 2016) in its distributed layout.

    <root>/bbox_train/<pid4>/<name>.jpg        <root>/bbox_test/<pid4>/<name>.jpg
    <root>/info/train_name.txt  test_name.txt  tracks_train_info.mat  tracks_test_info.mat
    <root>/info/query_IDX.mat

Frame names are `0001C1T0001F001.jpg`: pid (chars 1-4; `0000` distractor, `00-1` junk),
camera (char 6, 1-6), tracklet (chars 8-11), frame after `F`. `tracks_*_info` is an int
(N, 4) array [start, end, pid, camera] whose start/end are 1-based inclusive rows of the
name list; `query_IDX` (1, 1980) holds 1-based rows of `tracks_test_info` (uint16: cast
before arithmetic). Test tracklets with pid -1 (junk) are dropped; pid 0 (distractors) is
kept in the gallery. By default the gallery is query ∪ gallery (11,310 tracklets, the
lineage protocol); `query_in_gallery=False` gives the 9,330-tracklet gallery.
"""

from __future__ import annotations

import os

import numpy as np

from input_pipeline.datasets.tracklets import (
    DatasetError,
    Splits,
    Tracklet,
    frame_number,
    relabel,
    require_dir,
    require_file,
)

INFO_HINT = "the 'info' folder of the MARS evaluation code (MARS-evaluation/info)"


def _load_mat(path: str, key: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except Exception as e:  # scipy raises several types for truncated/corrupt files
        raise DatasetError(f"could not read {path}: {type(e).__name__}: {e}") from e
    if key not in data:
        keys = sorted(k for k in data if not k.startswith("__"))
        raise DatasetError(f"{path} has no variable {key!r} (it has {keys})")
    return np.asarray(data[key])


def _names(path: str) -> list[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _tracklets(root: str, folder: str, names: list[str], info: np.ndarray) -> list[Tracklet]:
    info = info.astype(np.int64)
    if info.ndim != 2 or info.shape[1] != 4:
        raise DatasetError(
            f"MARS track info must be (N, 4) [start, end, pid, cam], got {info.shape}"
        )
    out = []
    for row, (start, end, pid, cam) in enumerate(info):
        if not 1 <= start <= end <= len(names):
            raise DatasetError(
                f"MARS {folder} track info row {row + 1}: frames {start}..{end} outside the "
                f"{len(names)} names of the name list"
            )
        frames = [os.path.join(root, folder, n[:4], n) for n in names[start - 1 : end]]
        frames.sort(key=frame_number)
        out.append(Tracklet(tuple(frames), int(pid), int(cam) - 1))
    return out


def load(root: str, query_in_gallery: bool = True, check_files: bool = True) -> Splits:
    """Parses MARS at `root`.

    Args:
        root: the folder holding `bbox_train`, `bbox_test` and `info`.
        query_in_gallery: add the queries to the gallery (lineage default).
        check_files: verify that the first frame of every tracklet exists.

    Raises:
        DatasetError: a missing folder or file (named, with where it comes from), or
            malformed annotations.
    """
    info_dir = require_dir(os.path.join(root, "info"), f"MARS annotations ({INFO_HINT})")
    for folder in ("bbox_train", "bbox_test"):
        require_dir(os.path.join(root, folder), f"MARS frames ({folder}.zip, unpacked)")
    files = {
        name: require_file(os.path.join(info_dir, name), f"MARS annotation file ({INFO_HINT})")
        for name in (
            "train_name.txt",
            "test_name.txt",
            "tracks_train_info.mat",
            "tracks_test_info.mat",
            "query_IDX.mat",
        )
    }
    train = _tracklets(
        root,
        "bbox_train",
        _names(files["train_name.txt"]),
        _load_mat(files["tracks_train_info.mat"], "track_train_info"),
    )
    test = _tracklets(
        root,
        "bbox_test",
        _names(files["test_name.txt"]),
        _load_mat(files["tracks_test_info.mat"], "track_test_info"),
    )
    query_idx = _load_mat(files["query_IDX.mat"], "query_IDX").astype(np.int64).ravel() - 1
    if query_idx.size == 0 or query_idx.min() < 0 or query_idx.max() >= len(test):
        raise DatasetError(
            f"MARS query_IDX must hold 1-based rows of the {len(test)} test tracklets"
        )
    is_query = np.zeros(len(test), bool)
    is_query[query_idx] = True
    query = [test[i] for i in query_idx]
    gallery = [t for i, t in enumerate(test) if not is_query[i] or query_in_gallery]
    query = [t for t in query if t.pid != -1]  # junk
    gallery = [t for t in gallery if t.pid != -1]
    if check_files:
        for t in (*train, *test):
            if not os.path.isfile(t.frames[0]):
                raise DatasetError(f"MARS frame listed in {INFO_HINT} is missing: {t.frames[0]}")
    return Splits("MARS", relabel(train), query, gallery)
