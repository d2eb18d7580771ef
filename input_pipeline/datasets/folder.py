"""Your own tracklets, in a folder layout that needs no code.

    <root>/train/<identity>/<camera>_<tracklet>/*.jpg
    <root>/query/<identity>/<camera>_<tracklet>/*.jpg
    <root>/gallery/<identity>/<camera>_<tracklet>/*.jpg

`<identity>` is any folder name; the same name in query and gallery is the same person.
Identities named by integers keep their number in query/gallery; otherwise the test
identities are numbered in sorted order of their names. `<camera>` is the part of the
tracklet folder's name before the first `_`; cameras are numbered 0.. in sorted order of
their names over all splits (numbers sort as numbers). Frames are `.jpg`, `.jpeg` or
`.png`, in file-name order. Training identities are relabelled 0..N-1. The gallery is
what the gallery folder holds: put a query tracklet there too if it should count (as in
MARS' protocol).
"""

from __future__ import annotations

import os

from input_pipeline.datasets.tracklets import (
    DatasetError,
    Splits,
    Tracklet,
    list_images,
    relabel,
    require_dir,
)

LAYOUT = "<root>/{train,query,gallery}/<identity>/<camera>_<tracklet>/*.jpg"


def _sort_key(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _scan(root: str, split: str) -> list[tuple[str, str, tuple[str, ...]]]:
    folder = require_dir(os.path.join(root, split), f"the {split} folder ({LAYOUT})")
    out = []
    for identity in sorted(os.listdir(folder)):
        id_path = os.path.join(folder, identity)
        if not os.path.isdir(id_path) or identity.startswith("."):
            continue
        for name in sorted(os.listdir(id_path)):
            path = os.path.join(id_path, name)
            if not os.path.isdir(path) or name.startswith("."):
                continue
            camera, sep, _ = name.partition("_")
            if not sep or not camera:
                raise DatasetError(
                    f"tracklet folder {path} is not named <camera>_<tracklet> ({LAYOUT})"
                )
            frames = tuple(sorted(list_images(path)))
            if not frames:
                raise DatasetError(f"tracklet folder holds no image: {path}")
            out.append((identity, camera, frames))
    if not out:
        raise DatasetError(f"the {split} folder holds no tracklet: {folder} ({LAYOUT})")
    return out


def load(root: str, name: str = "") -> Splits:
    """Parses a dataset in the folder layout at `root`."""
    scanned = {split: _scan(root, split) for split in ("train", "query", "gallery")}
    cameras = sorted({c for rows in scanned.values() for _, c, _ in rows}, key=_sort_key)
    camid = {c: i for i, c in enumerate(cameras)}
    test_ids = sorted({i for s in ("query", "gallery") for i, _, _ in scanned[s]}, key=_sort_key)
    numeric = all(i.isdigit() for i in test_ids)
    test_pid = {i: int(i) if numeric else n for n, i in enumerate(test_ids)}
    train_ids = sorted({i for i, _, _ in scanned["train"]}, key=_sort_key)
    train_pid = {i: n for n, i in enumerate(train_ids)}
    splits = {}
    for split, rows in scanned.items():
        pids = train_pid if split == "train" else test_pid
        splits[split] = [Tracklet(frames, pids[i], camid[c]) for i, c, frames in rows]
    splits["train"] = relabel(splits["train"])
    return Splits(name or os.path.basename(os.path.normpath(root)), **splits, camera_names=cameras)
