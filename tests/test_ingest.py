"""Ingest to ArrayRecord: pixel round trip, corrupt images, atomic output, manifest."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from input_pipeline import ingest as ingest_lib
from input_pipeline.datasets import dukev, mars
from input_pipeline.datasets.tracklets import DatasetError
from input_pipeline.records import ReIDDataset
from tests import fixtures


def _source_pixels(path, size=None):
    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
        return np.asarray(image)


def _check_round_trip(splits, data, size, atol=0):
    for split in ("train", "query", "gallery"):
        index = data.splits[split]
        tracklets = getattr(splits, split)
        assert len(index) == len(tracklets)
        for i, t in enumerate(tracklets):
            assert index.count[i] == len(t.frames) and index.pid[i] == t.pid
            assert index.camid[i] == t.camid
            for j, path in enumerate(t.frames):
                got = data.frame(index.first[i] + j)
                want = _source_pixels(path, size)
                assert got.shape == (*size, 3)
                np.testing.assert_allclose(got.astype(int), want.astype(int), atol=atol)


def test_mars_round_trip_is_exact_and_queries_stored_once(tmp_path):
    fixtures.write_mars(str(tmp_path / "src"))
    splits = mars.load(str(tmp_path / "src"))
    manifest = ingest_lib.ingest(splits, str(tmp_path / "out"), (16, 8), workers=2)
    data = ReIDDataset(str(tmp_path / "out"))
    _check_round_trip(splits, data, (16, 8))  # same size JPEG: stored byte for byte
    frames = {s: sum(len(t.frames) for t in getattr(splits, s)) for s in ("train", "gallery")}
    assert manifest["records"] == frames["train"] + frames["gallery"]
    assert manifest["splits"]["query"] == {"ids": 2, "tracklets": 3, "frames": 8}
    assert not os.path.exists(str(tmp_path / "out") + ".partial")


def test_resized_round_trip_lossless_and_jpeg(tmp_path):
    fixtures.write_dukev(str(tmp_path / "src"))
    splits = dukev.load(str(tmp_path / "src"))
    ingest_lib.ingest(splits, str(tmp_path / "png"), (32, 16), lossless=True, workers=1)
    _check_round_trip(splits, ReIDDataset(str(tmp_path / "png")), (32, 16))
    ingest_lib.ingest(splits, str(tmp_path / "jpg"), (32, 16), workers=1)
    data = ReIDDataset(str(tmp_path / "jpg"))
    t = splits.train[0]
    err = np.abs(data.frame(0).astype(int) - _source_pixels(t.frames[0], (32, 16)).astype(int))
    assert err.mean() < 3  # JPEG quality 95 re-encoding of a resized frame


def test_corrupt_image_stops_or_is_skipped(tmp_path):
    fixtures.write_dukev(str(tmp_path / "src"))
    splits = dukev.load(str(tmp_path / "src"))
    bad = splits.gallery[1].frames[0]
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = str(tmp_path / "out")
    with pytest.raises(
        DatasetError, match=r"corrupt or unreadable image .*" + os.path.basename(bad)
    ):
        ingest_lib.ingest(splits, out, (16, 8), workers=1)
    assert not os.path.exists(out)  # no half dataset
    manifest = ingest_lib.ingest(splits, out, (16, 8), workers=1, skip_bad=True)
    assert [s["path"] for s in manifest["skipped_frames"]] == [bad]
    data = ReIDDataset(out)
    assert data.splits["gallery"].count[1] == len(splits.gallery[1].frames) - 1
    with pytest.raises(DatasetError, match="already holds"):
        ingest_lib.ingest(splits, out, (16, 8), workers=1, skip_bad=True)


def test_cli_and_missing_dataset_message(tmp_path, capsys):
    fixtures.write_dukev(str(tmp_path / "src"))
    out = str(tmp_path / "out")
    args = ["--dataset", "dukev", "--root", str(tmp_path / "src"), "--out", out]
    assert ingest_lib.main([*args, "--size", "16x8", "--workers", "1"]) == 0
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["dataset"] == "dukev" and manifest["size"] == [16, 8]
    assert "DukeMTMC-VideoReID" in capsys.readouterr().out
    with pytest.raises(DatasetError, match=r"python -m input_pipeline\.ingest --dataset"):
        ReIDDataset(str(tmp_path / "nothing"))
