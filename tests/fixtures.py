"""Test fixtures: small, faithful copies of each dataset's native layout.

Each `write_*` creates real image files (JPEG for MARS, Duke-V and LS-VID; PNG for
iLIDS-VID), the annotation files in their original formats (MATLAB v5 `.mat` through
scipy, MATLAB v7.3 / HDF5 through h5py) and the exact file-name patterns, and returns the
counts a correct parser must report.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def write_image(path: str, rng: np.random.Generator, size: tuple[int, int] = (16, 8)) -> None:
    """A small random-colour image; the format follows the suffix."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h, w = size
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def write_mars(root: str, seed: int = 0) -> dict:
    """MARS: bbox_train/bbox_test, info/*.txt and v5 .mat files (pids 0 and -1 in test)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    counts = {}

    def tracklets(folder, spec):
        names, rows = [], []
        for pid, cam, tracklet, frames in spec:
            pid_dir = "00-1" if pid == -1 else f"{pid:04d}"
            start = len(names) + 1
            block = [f"{pid_dir}C{cam}T{tracklet:04d}F{f:03d}.jpg" for f in frames]
            for name in block:
                write_image(os.path.join(root, folder, pid_dir, name), rng)
            names += block
            rows.append([start, len(names), pid, cam])
        return names, np.array(rows, np.int32)

    # 3 training ids (raw pids 2, 5, 9), 7 tracklets; frames deliberately out of order once.
    train_spec = [
        (2, 1, 1, [1, 2, 3]),
        (2, 3, 2, [5, 4, 6, 7]),
        (5, 2, 1, [1, 2]),
        (5, 2, 2, [1, 2, 3]),
        (5, 6, 3, [1, 2, 3, 4, 5]),
        (9, 4, 1, [1, 2, 3]),
        (9, 5, 2, [2, 3]),
    ]
    # Test: ids 11 and 12 in several cameras, a distractor (pid 0) and two junk (pid -1).
    test_spec = [
        (11, 1, 1, [1, 2, 3]),  # 0: query
        (11, 2, 2, [1, 2]),  # 1
        (11, 3, 3, [1, 2, 3, 4]),  # 2
        (12, 2, 1, [1, 2]),  # 3: query
        (12, 5, 2, [1, 2, 3]),  # 4
        (0, 4, 1, [1, 2]),  # 5: distractor
        (-1, 1, 1, [1, 2]),  # 6: junk
        (-1, 6, 2, [1]),  # 7: junk
        (12, 6, 3, [7, 8, 9]),  # 8: query
    ]
    info = os.path.join(root, "info")
    os.makedirs(info, exist_ok=True)
    names, rows = tracklets("bbox_train", train_spec)
    with open(os.path.join(info, "train_name.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    savemat(os.path.join(info, "tracks_train_info.mat"), {"track_train_info": rows})
    names, rows = tracklets("bbox_test", test_spec)
    with open(os.path.join(info, "test_name.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    savemat(os.path.join(info, "tracks_test_info.mat"), {"track_test_info": rows})
    query = [1, 4, 9]  # 1-based rows of track_test_info, stored as uint16 like the original
    savemat(os.path.join(info, "query_IDX.mat"), {"query_IDX": np.array([query], np.uint16)})
    counts.update(
        train_ids=3,
        train_tracklets=7,
        train_frames=sum(len(s[3]) for s in train_spec),
        query=3,
        gallery_with_query=9 - 2,  # every test tracklet but the 2 junk
        gallery_without_query=9 - 2 - 3,
        distractors=1,
    )
    return counts


def write_dukev(root: str, seed: int = 0) -> dict:
    """DukeMTMC-VideoReID: both frame-name formats, frame numbering starting above 1."""
    rng = np.random.default_rng(seed)
    spec = {
        "train": [(1, 1, 2, range(99, 104)), (1, 2, 5, range(7, 10)), (4, 1, 1, range(1, 4)),
                  (8, 1, 8, range(998, 1003)), (8, 2, 8, range(20, 22))],
        "query": [(3, 1, 2, range(30, 33)), (6, 1, 7, range(5, 8))],
        "gallery": [(3, 1, 4, range(40, 44)), (6, 1, 1, range(2, 4)), (6, 2, 3, range(9, 12)),
                    (10, 1, 6, range(1, 3))],
    }  # fmt: skip
    for split, tracklets in spec.items():
        for i, (pid, tracklet, cam, frames) in enumerate(tracklets):
            folder = os.path.join(root, split, f"{pid:04d}", f"{tracklet:04d}")
            for f in frames:
                if i % 2:
                    name = f"{pid:04d}_C{cam}_F{f:04d}_X{30000 + f:05d}.jpg"
                else:
                    name = f"{pid:04d}C{cam}F{f:04d}X{30000 + f:05d}.jpg"
                write_image(os.path.join(folder, name), rng)
    return {
        "train_ids": 3,
        "train_tracklets": 5,
        "train_frames": 5 + 3 + 3 + 5 + 2,
        "query": 2,
        "gallery": 4,
        "longest": 5,
    }


def write_lsvid(root: str, seed: int = 0) -> dict:
    """LS-VID: list_sequence/*.txt with path prefixes, and a MATLAB v7.3 info_test.mat."""
    import h5py

    rng = np.random.default_rng(seed)

    def write(split, tracklets):
        lines = []
        for pid, index, cam, length in tracklets:
            stem = f"{pid:04d}_{index:03d}_{cam:02d}_0000"
            folder = f"tracklet_{split}/{pid:04d}"
            for f in range(length):
                write_image(os.path.join(root, folder, f"{stem}_{f:04d}.jpg"), rng)
            lines.append(f"{folder}/{stem} {pid}")
        os.makedirs(os.path.join(root, "list_sequence"), exist_ok=True)
        with open(os.path.join(root, "list_sequence", f"list_seq_{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")

    write("train", [(3, 0, 1, 4), (3, 1, 7, 3), (8, 0, 15, 5), (8, 1, 2, 2), (21, 0, 9, 3)])
    write("test", [(30, 0, 1, 3), (30, 1, 4, 2), (31, 0, 11, 4), (31, 1, 12, 3), (32, 0, 5, 2)])
    data = os.path.join(root, "test", "data")
    os.makedirs(data, exist_ok=True)
    path = os.path.join(data, "info_test.mat")
    # MATLAB v7.3 files are HDF5 with a 512-byte user block holding the MATLAB header, and
    # store arrays transposed: a (1, n) double row vector.
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("query", data=np.array([[1.0], [3.0]]))
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: reidjax fixture HDF5 schema")
    return {"train_ids": 3, "train_tracklets": 5, "train_frames": 17, "query": 2, "gallery": 5}


def write_ilidsvid(root: str, seed: int = 0, people: int = 6) -> dict:
    """iLIDS-VID: cam1/cam2 PNG sequences per person and the 10-split ls_set .mat."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    names = [f"person{n:03d}" for n in rng.choice(np.arange(1, 320), people, replace=False)]
    for cam in (1, 2):
        for i, person in enumerate(names):
            for f in range(3 + (i + cam) % 3):
                path = os.path.join(root, "i-LIDS-VID", "sequences", f"cam{cam}", person,
                                    f"cam{cam}_{person}_{f:05d}.png")  # fmt: skip
                write_image(path, rng)
    splits = np.stack([rng.permutation(people) + 1 for _ in range(10)]).astype(np.float64)
    folder = os.path.join(root, "train-test people splits")
    os.makedirs(folder, exist_ok=True)
    savemat(os.path.join(folder, "train_test_splits_ilidsvid.mat"), {"ls_set": splits})
    return {"people": sorted(names), "ls_set": splits.astype(int), "half": people // 2}


def write_prid2011(root: str, seed: int = 0, splits_json: bool = False) -> dict:
    """PRID2011 multi-shot: cam_a/cam_b PNG sequences; 6 persons in both cameras, one only
    in cam_a and one only in cam_b; optionally torchreid's splits_prid2011.json."""
    import json

    rng = np.random.default_rng(seed)
    both = [f"person_{n:04d}" for n in range(1, 7)]
    for cam, only in (("cam_a", "person_0007"), ("cam_b", "person_0300")):
        for i, person in enumerate([*both, only]):
            for f in range(2 + (i + len(cam)) % 3):
                write_image(
                    os.path.join(root, "prid_2011", "multi_shot", cam, person, f"{f + 1:04d}.png"),
                    rng,
                )
    splits = None
    if splits_json:
        splits = [
            {"train": sorted(both[i] for i in p[:3]), "test": sorted(both[i] for i in p[3:])}
            for p in (rng.permutation(6) for _ in range(10))
        ]
        with open(os.path.join(root, "splits_prid2011.json"), "w") as f:
            json.dump(splits, f)
    return {"persons": both, "splits": splits, "train_ids": 3, "train_tracklets": 6,
            "query": 3, "gallery": 3}  # fmt: skip


def write_folder(root: str, seed: int = 0) -> dict:
    """The folder layout for users' own data: named identities and cameras."""
    rng = np.random.default_rng(seed)
    spec = {
        "train": [("alice", "cam1_a", 3), ("alice", "cam2_b", 2), ("bob", "cam1_c", 4),
                  ("carol", "cam3_d", 2), ("carol", "cam1_e", 3)],
        "query": [("dave", "cam1_f", 3), ("erin", "cam2_g", 2)],
        "gallery": [("dave", "cam2_h", 2), ("dave", "cam3_i", 4), ("erin", "cam1_j", 3),
                    ("frank", "cam3_k", 2)],
    }  # fmt: skip
    for split, tracklets in spec.items():
        for identity, name, n in tracklets:
            for f in range(n):
                write_image(os.path.join(root, split, identity, name, f"{f:03d}.jpg"), rng)
    return {"train": {"tracklets": 5, "ids": 3, "frames": 14},
            "query": {"tracklets": 2, "ids": 2, "frames": 5},
            "gallery": {"tracklets": 4, "ids": 3, "frames": 11}}  # fmt: skip


# The writer of each dataset's native layout.
WRITERS = {
    "mars": write_mars,
    "dukev": write_dukev,
    "lsvid": write_lsvid,
    "ilidsvid": write_ilidsvid,
    "prid2011": write_prid2011,
    "folder": write_folder,
}


def prepare(config, data_dir) -> str:
    """The fixture of `config.dataset.name` written next to `data_dir` and built there by
    its tensorflow-datasets builder at the config's frame size; returns `data_dir`."""
    from input_pipeline.build import build_dataset
    from reidjax.data_setup import builder_config

    name = config.dataset.name
    raw = os.path.join(os.path.dirname(str(data_dir)), f"{name}_raw")
    if not os.path.exists(raw):
        WRITERS[name](raw)
    build_dataset(name, builder_config(config), str(data_dir), raw, workers=1)
    return str(data_dir)
