"""Dataset parsers on fixtures written in each native layout (input_pipeline/datasets)."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from input_pipeline.datasets import dukev, folder, ilidsvid, lsvid, mars, prid2011
from input_pipeline.datasets.tracklets import frame_number
from input_pipeline.errors import DatasetError
from input_pipeline.registry import load_dataset
from tests import fixtures

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _check_sorted(tracklets, key):
    for t in tracklets:
        numbers = [key(f) for f in t.frames]
        assert numbers == sorted(numbers)
        assert all(os.path.isfile(f) for f in t.frames)


@pytest.fixture(scope="module")
def mars_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mars"))
    return root, fixtures.write_mars(root)


def test_mars_counts_junk_and_distractors(mars_root):
    root, counts = mars_root
    splits = mars.load(root)
    assert splits.num_train_ids == counts["train_ids"]
    assert sorted({t.pid for t in splits.train}) == [0, 1, 2]  # relabelled 2, 5, 9
    assert len(splits.train) == counts["train_tracklets"]
    assert sum(len(t.frames) for t in splits.train) == counts["train_frames"]
    assert len(splits.query) == counts["query"]
    assert len(splits.gallery) == counts["gallery_with_query"]
    assert all(t.pid != -1 for t in splits.query + splits.gallery)  # junk dropped
    assert sum(t.pid == 0 for t in splits.gallery) == counts["distractors"]  # kept
    assert {t.camid for t in splits.train + splits.gallery} <= set(range(6))
    assert [t.pid for t in splits.query] == [11, 12, 12]
    assert [t.camid for t in splits.query] == [0, 1, 5]
    _check_sorted(splits.train + splits.gallery, frame_number)
    assert [frame_number(f) for f in splits.train[1].frames] == [4, 5, 6, 7]
    without = mars.load(root, query_in_gallery=False)
    assert len(without.gallery) == counts["gallery_without_query"]
    assert not {t.frames for t in without.query} & {t.frames for t in without.gallery}
    assert "MARS" in splits.summary() and "train" in splits.summary()


def test_mars_missing_info_file_names_path(mars_root, tmp_path):
    root, _ = mars_root
    copy = str(tmp_path / "mars")
    shutil.copytree(root, copy)
    os.remove(os.path.join(copy, "info", "query_IDX.mat"))
    with pytest.raises(DatasetError, match=r"info[/\\]query_IDX\.mat.*|query_IDX\.mat"):
        mars.load(copy)
    shutil.rmtree(os.path.join(copy, "info"))
    with pytest.raises(DatasetError, match=r"MARS annotations .*MARS-evaluation"):
        mars.load(copy)


def test_mars_corrupt_mat_and_bad_rows(mars_root, tmp_path):
    root, _ = mars_root
    copy = str(tmp_path / "mars")
    shutil.copytree(root, copy)
    path = os.path.join(copy, "info", "tracks_test_info.mat")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:60])
    with pytest.raises(DatasetError, match="could not read"):
        mars.load(copy)
    from scipy.io import savemat

    savemat(path, {"track_test_info": np.array([[1, 999, 11, 1]], np.int32)})
    with pytest.raises(DatasetError, match=r"outside the .* names"):
        mars.load(copy)


def test_dukev_counts_formats_and_numbering(tmp_path):
    counts = fixtures.write_dukev(str(tmp_path))
    splits = dukev.load(str(tmp_path))
    assert splits.num_train_ids == counts["train_ids"]
    assert len(splits.train) == counts["train_tracklets"]
    assert sum(len(t.frames) for t in splits.train) == counts["train_frames"]
    assert (len(splits.query), len(splits.gallery)) == (counts["query"], counts["gallery"])
    # Numbering from 99 and from 998: every frame is kept, in frame order.
    first = splits.train[0]
    assert [frame_number(f) for f in first.frames] == [99, 100, 101, 102, 103]
    assert [frame_number(f) for f in splits.train[3].frames] == [998, 999, 1000, 1001, 1002]
    _check_sorted(splits.train + splits.query + splits.gallery, frame_number)
    assert {t.camid for t in splits.train} == {1, 4, 0, 7}
    assert dukev.camera_of("0001_C6_F0099_X30823.jpg") == 5
    assert dukev.camera_of("0001C6F0099X30823.jpg") == 5


def test_dukev_empty_tracklet_folder(tmp_path):
    fixtures.write_dukev(str(tmp_path))
    os.makedirs(tmp_path / "gallery" / "0010" / "0099")
    with pytest.raises(DatasetError, match=r"holds no image: .*0010[/\\]0099"):
        dukev.load(str(tmp_path))


def test_lsvid_counts_and_v73_query(tmp_path):
    counts = fixtures.write_lsvid(str(tmp_path))
    splits = lsvid.load(str(tmp_path))
    assert splits.num_train_ids == counts["train_ids"]
    assert len(splits.train) == counts["train_tracklets"]
    assert sum(len(t.frames) for t in splits.train) == counts["train_frames"]
    assert len(splits.query) == counts["query"] and len(splits.gallery) == counts["gallery"]
    assert [(t.pid, t.camid) for t in splits.query] == [(30, 0), (31, 10)]
    assert {t.frames for t in splits.query} <= {t.frames for t in splits.gallery}
    assert sorted({t.camid for t in splits.train}) == [0, 1, 6, 8, 14]
    _check_sorted(splits.train, lambda f: f)
    with open(tmp_path / "test" / "data" / "info_test.mat", "rb") as f:
        assert f.read(10) == b"MATLAB 7.3"


def test_lsvid_missing_info_and_bad_line(tmp_path):
    fixtures.write_lsvid(str(tmp_path))
    os.remove(tmp_path / "test" / "data" / "info_test.mat")
    with pytest.raises(DatasetError, match=r"test[/\\]data[/\\]info_test\.mat"):
        lsvid.load(str(tmp_path))
    fixtures.write_lsvid(str(tmp_path))
    with open(tmp_path / "list_sequence" / "list_seq_test.txt", "a") as f:
        f.write("tracklet_test/0099/0099_000_01_0000\n")
    with pytest.raises(DatasetError, match=r"list_seq_test\.txt:6: expected"):
        lsvid.load(str(tmp_path))


@pytest.mark.parametrize("split_id", [0, 7])
def test_ilidsvid_splits_and_cameras(tmp_path, split_id):
    info = fixtures.write_ilidsvid(str(tmp_path))
    splits = ilidsvid.load(str(tmp_path), split_id=split_id)
    half = info["half"]
    row = info["ls_set"][split_id]
    test_people = {info["people"][i - 1] for i in row[:half]}
    train_people = {info["people"][i - 1] for i in row[half:]}
    assert not test_people & train_people
    assert splits.num_train_ids == half
    assert len(splits.train) == 2 * half
    assert sorted({t.camid for t in splits.train}) == [0, 1]  # both cameras in training
    assert {t.camid for t in splits.query} == {0} and {t.camid for t in splits.gallery} == {1}
    assert [t.pid for t in splits.query] == [t.pid for t in splits.gallery]
    folders = {os.path.basename(os.path.dirname(t.frames[0])) for t in splits.query}
    assert folders == test_people


def test_prid2011_splits_file_and_generated_splits(tmp_path):
    info = fixtures.write_prid2011(str(tmp_path / "json"), splits_json=True)
    for k in (0, 9):
        splits = prid2011.load(str(tmp_path / "json"), split_id=k)
        test_dirs = {os.path.basename(os.path.dirname(t.frames[0])) for t in splits.query}
        assert test_dirs == set(info["splits"][k]["test"])
        assert splits.num_train_ids == 3 and len(splits.train) == 6
        assert {t.camid for t in splits.query} == {0} and {t.camid for t in splits.gallery} == {1}
        assert [t.pid for t in splits.query] == [t.pid for t in splits.gallery]
        assert all(p in info["persons"] for p in test_dirs)  # person_0007 / _0300: one camera
    fixtures.write_prid2011(str(tmp_path / "gen"))
    generated = [prid2011.load(str(tmp_path / "gen"), split_id=k) for k in range(10)]
    assert "generated" in generated[0].name
    tests = [frozenset(t.pid for t in s.query) for s in generated]
    assert len(set(tests)) > 1 and all(len(t) == 3 for t in tests)
    again = prid2011.load(str(tmp_path / "gen"), split_id=4)
    assert [t.frames for t in again.query] == [t.frames for t in generated[4].query]
    assert (
        prid2011.generated_splits([f"p{i}" for i in range(200)])[0]["train"][:2]
        == sorted(prid2011.generated_splits([f"p{i}" for i in range(200)])[0]["train"])[:2]
    )


def test_folder_layout_names_and_errors(tmp_path):
    fixtures.write_folder(str(tmp_path / "shop"))
    splits = folder.load(str(tmp_path / "shop"))
    assert splits.name == "shop" and splits.num_train_ids == 3
    # alice cam1_a, cam2_b; bob cam1_c; carol cam1_e, cam3_d (tracklet folders sorted)
    assert [t.camid for t in splits.train] == [0, 1, 0, 0, 2]
    query = {
        os.path.basename(os.path.dirname(os.path.dirname(t.frames[0]))): t.pid for t in splits.query
    }
    gallery_pids = {t.pid for t in splits.gallery}
    assert query == {"dave": 0, "erin": 1} and gallery_pids == {0, 1, 2}  # frank: 2
    (tmp_path / "shop" / "train" / "bob" / "nocamera").mkdir()
    with pytest.raises(DatasetError, match="is not named <camera>_<tracklet>"):
        folder.load(str(tmp_path / "shop"))
    with pytest.raises(DatasetError, match=r"the train folder \(<root>/\{train,query"):
        folder.load(str(tmp_path / "missing"))


def test_registry_and_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"valid: \['dukev', 'folder', 'ilidsvid', 'lsvid', 'mars', 'prid2011', 'synthetic'\]",
    ):
        load_dataset("market1501", str(tmp_path))
    with pytest.raises(DatasetError, match=r"expected the folder .*train"):
        load_dataset("dukev", str(tmp_path))
    with pytest.raises(ValueError, match="split_id"):
        ilidsvid.load(str(tmp_path), split_id=10)


def test_summary_cli(mars_root, tmp_path, capsys):
    root, counts = mars_root
    command = [sys.executable, "-m", "input_pipeline", "inspect", "--dataset", "mars"]
    done = subprocess.run(
        [*command, "--manual_dir", root], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and f"{counts['train_tracklets']:>10}" in done.stdout
    command[-1] = "dukev"
    done = subprocess.run(
        [*command, "--manual_dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 1 and done.stderr.startswith("error: ")
    assert "expected the folder" in done.stderr and len(done.stderr.strip().splitlines()) == 1
