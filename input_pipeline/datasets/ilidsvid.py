"""iLIDS-VID (Wang et al., ECCV 2014) in its distributed layout.

    <root>/i-LIDS-VID/sequences/cam1/<person>/*.png     (and cam2)
    <root>/train-test people splits/train_test_splits_ilidsvid.mat

`ls_set` (10, 300) holds, per split, 1-based indices into the **sorted** person folders:
columns 0-149 are the test people, 150-299 the training people. Training uses both
cameras (camids 0 and 1); the queries are the test people's cam1 tracklets and the gallery
their cam2 tracklets. Results are reported as the mean over the 10 splits.
"""

from __future__ import annotations

import os

import numpy as np

from input_pipeline.datasets.tracklets import (
    DatasetError,
    Splits,
    Tracklet,
    list_images,
    relabel,
    require_dir,
    require_file,
)
from input_pipeline.registry import NUM_SPLITS

HINT = "the iLIDS-VID release (iLIDS-VID.tar)"


def _person_dirs(root: str) -> tuple[list[str], str]:
    sequences = require_dir(
        os.path.join(root, "i-LIDS-VID", "sequences"), f"iLIDS-VID sequences ({HINT})"
    )
    for cam in ("cam1", "cam2"):
        require_dir(os.path.join(sequences, cam), f"iLIDS-VID camera folder ({HINT})")
    people = sorted(d for d in os.listdir(os.path.join(sequences, "cam1")) if not d.startswith("."))
    return people, sequences


def _tracklet(sequences: str, cam: int, person: str, pid: int) -> Tracklet:
    folder = os.path.join(sequences, f"cam{cam + 1}", person)
    if not os.path.isdir(folder):
        raise DatasetError(f"iLIDS-VID tracklet folder missing: {folder}")
    frames = sorted(list_images(folder))
    if not frames:
        raise DatasetError(f"iLIDS-VID tracklet folder holds no image: {folder}")
    return Tracklet(tuple(frames), pid, cam)


def load(root: str, split_id: int = 0) -> Splits:
    """Parses split `split_id` (0-9) of iLIDS-VID at `root` (whole training tracklets;
    `config.dataset.dense_train` cuts them when the prepared data is opened)."""
    if not 0 <= split_id < NUM_SPLITS:
        raise ValueError(f"iLIDS-VID split_id must be in 0..{NUM_SPLITS - 1}, got {split_id}")
    people, sequences = _person_dirs(root)
    path = require_file(
        os.path.join(root, "train-test people splits", "train_test_splits_ilidsvid.mat"),
        f"iLIDS-VID split file ({HINT})",
    )
    from scipy.io import loadmat

    try:
        splits = np.asarray(loadmat(path)["ls_set"]).astype(np.int64)
    except KeyError as e:
        raise DatasetError(f"{path} has no variable 'ls_set'") from e
    except Exception as e:
        raise DatasetError(f"could not read {path}: {type(e).__name__}: {e}") from e
    if splits.ndim != 2 or splits.shape[0] < NUM_SPLITS or splits.shape[1] % 2:
        raise DatasetError(f"{path}: ls_set must be (10, 2·people), got {splits.shape}")
    if splits.min() < 1 or splits.max() > len(people):
        raise DatasetError(f"{path}: ls_set indexes {len(people)} person folders, 1-based")
    half = splits.shape[1] // 2
    test_idx, train_idx = splits[split_id, :half] - 1, splits[split_id, half:] - 1
    train = [_tracklet(sequences, cam, people[i], int(i)) for i in train_idx for cam in (0, 1)]
    query = [_tracklet(sequences, 0, people[i], int(i)) for i in test_idx]
    gallery = [_tracklet(sequences, 1, people[i], int(i)) for i in test_idx]
    return Splits(f"iLIDS-VID split {split_id}", relabel(train), query, gallery)
