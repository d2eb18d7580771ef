"""DukeMTMC-VideoReID (Wu et al., CVPR 2018) in its distributed layout.

    <root>/{train,query,gallery}/<pid4>/<tracklet4>/<frame>.jpg

Frame names come in two formats, `0001C6F0099X30823.jpg` and `0001_C6_F0099_X30823.jpg`:
camera after `C` (1-8), frame index after `F`. Every frame of a tracklet folder is read,
sorted by the frame index (numbering often starts far above 1).
"""

from __future__ import annotations

import os
import re

from input_pipeline.datasets.tracklets import (
    DatasetError,
    Splits,
    Tracklet,
    frame_number,
    list_images,
    relabel,
    require_dir,
)

_CAMERA = re.compile(r"^\d+_?C(\d+)", re.IGNORECASE)


def camera_of(path: str) -> int:
    """0-based camera of a Duke-V frame name (`0001C6F...` or `0001_C6_F...`)."""
    match = _CAMERA.match(os.path.basename(path))
    if match is None:
        raise DatasetError(f"Duke-V frame name without a camera field: {path}")
    return int(match.group(1)) - 1


def _split(root: str, split: str) -> list[Tracklet]:
    folder = require_dir(
        os.path.join(root, split), f"DukeMTMC-VideoReID {split} split (DukeMTMC-VideoReID.zip)"
    )
    out = []
    for pid_dir in sorted(os.listdir(folder)):
        pid_path = os.path.join(folder, pid_dir)
        if not os.path.isdir(pid_path):
            continue
        if not pid_dir.isdigit():
            raise DatasetError(f"Duke-V identity folder name is not a number: {pid_path}")
        for tracklet_dir in sorted(os.listdir(pid_path)):
            path = os.path.join(pid_path, tracklet_dir)
            if not os.path.isdir(path):
                continue
            frames = sorted(list_images(path), key=frame_number)
            if not frames:
                raise DatasetError(f"Duke-V tracklet folder holds no image: {path}")
            cameras = {camera_of(f) for f in frames}
            if len(cameras) != 1:
                raise DatasetError(f"Duke-V tracklet {path} mixes cameras {sorted(cameras)}")
            out.append(Tracklet(tuple(frames), int(pid_dir), cameras.pop()))
    if not out:
        raise DatasetError(f"Duke-V {split} split holds no tracklet: {folder}")
    return out


def load(root: str) -> Splits:
    """Parses DukeMTMC-VideoReID at `root` (the folder holding train/query/gallery).

    Training tracklets are whole; `config.dataset.dense_train` cuts them when the prepared
    data is opened (`input_pipeline.dense`).
    """
    train = _split(root, "train")
    return Splits(
        "DukeMTMC-VideoReID", relabel(train), _split(root, "query"), _split(root, "gallery")
    )
