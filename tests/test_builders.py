"""The tensorflow-datasets builders: counts, stored order, pixels, errors, no TensorFlow."""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from input_pipeline import build as build_lib
from input_pipeline.builders import ReIDConfig, config_name, encode_array
from input_pipeline.builders.mars.mars_dataset_builder import Builder as MarsBuilder
from input_pipeline.datasets import dukev, folder, ilidsvid, lsvid, mars, prid2011
from input_pipeline.errors import DatasetError
from input_pipeline.records import ReIDDataset
from input_pipeline.registry import NUM_SPLITS
from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (16, 8)  # the fixtures' frame size: their JPEGs are stored byte for byte


def _build(name, raw, data_dir, size=SIZE, split=None, prefix=None):
    return build_lib.build_dataset(
        name, config_name(size, split, prefix), str(data_dir), str(raw), workers=1, quiet=True
    )


def _pil(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _check_against_parser(data: ReIDDataset, splits, size=SIZE):
    """Every tracklet row points at its own frames in stored order: the frames' `tracklet`
    field names a row with the same frame list, and the pixels are the source frames'."""
    source = data.source
    for split in ("train", "query", "gallery"):
        index, tracklets = data.splits[split], getattr(splits, split)
        assert len(index) == len(tracklets), split
        for i, t in enumerate(tracklets):
            assert (index.pid[i], index.camid[i], index.count[i]) == (t.pid, t.camid, len(t.frames))
            frames = data.frames(index.first[i] + np.arange(index.count[i]))
            for j, path in enumerate(t.frames):
                with Image.open(path) as image:
                    want = np.asarray(image.convert("RGB").resize(size[::-1], Image.BICUBIC))
                stored = int(index.first[i] + j)
                assert data.encoded(stored) == source[stored]["image"]  # TFDS's own read
                if path.endswith(".jpg"):  # RGB JPEG at size: the very bytes
                    with open(path, "rb") as f:
                        assert source[int(index.first[i] + j)]["image"] == f.read()
                    np.testing.assert_array_equal(frames[j], want)
                else:  # PNG: encoded as JPEG quality 95, once, at build time
                    with Image.open(path) as image:
                        encoded = encode_array(np.asarray(image.convert("RGB")), size)
                    np.testing.assert_array_equal(frames[j], _pil(encoded))


@pytest.mark.parametrize(
    "name, writer, parse",
    [
        ("mars", fixtures.write_mars, mars.load),
        ("dukev", fixtures.write_dukev, dukev.load),
        ("lsvid", fixtures.write_lsvid, lsvid.load),
    ],
)
def test_builders_store_the_parsed_protocol(tmp_path, name, writer, parse):
    expected = writer(str(tmp_path / "raw"))
    data = _build(name, tmp_path / "raw", tmp_path / "tfds")
    splits = parse(str(tmp_path / "raw"))
    _check_against_parser(data, splits)
    _, counts = build_lib.summary(data)
    assert counts["train"]["ids"] == expected["train_ids"]
    assert counts["train"]["tracklets"] == expected["train_tracklets"]
    gallery = expected.get("gallery_with_query", expected.get("gallery"))
    assert counts["query"]["tracklets"] == expected["query"]
    assert counts["gallery"]["tracklets"] == gallery
    assert data.camera_names[:2] == (["1", "2"] if name == "lsvid" else ["C1", "C2"])
    if name == "mars":  # queries are gallery tracklets too: stored once
        stored = sum(len(t.frames) for s in ("train", "gallery") for t in getattr(splits, s))
        assert data.num_frames == stored


def test_split_builders_ilidsvid_and_prid(tmp_path):
    """iLIDS-VID and PRID2011: one build holds the ten train/test splits, every frame once;
    each split read from it equals the parser's split."""
    fixtures.write_ilidsvid(str(tmp_path / "ilids"))
    first = _build("ilidsvid", tmp_path / "ilids", tmp_path / "tfds")
    assert first.config == "16x8" and first.num_folds == NUM_SPLITS
    folds = [ilidsvid.load(str(tmp_path / "ilids"), split_id=k) for k in range(NUM_SPLITS)]
    distinct = {f for splits in folds for s in ("train", "query", "gallery")
                for t in getattr(splits, s) for f in t.frames}  # fmt: skip
    assert first.num_frames == len(distinct)  # stored once, not once per split
    for k in (0, 7, 9):
        data = ReIDDataset("ilidsvid", "16x8", str(tmp_path / "tfds"), fold=k)
        _check_against_parser(data, folds[k])
    with pytest.raises(DatasetError, match=r"has 10 train/test split\(s\); split 10 does not"):
        ReIDDataset("ilidsvid", "16x8", str(tmp_path / "tfds"), fold=10)
    info = fixtures.write_prid2011(str(tmp_path / "prid"))
    _build("prid2011", tmp_path / "prid", tmp_path / "tfds")
    data = ReIDDataset("prid2011", "16x8", str(tmp_path / "tfds"), fold=3)
    splits = prid2011.load(str(tmp_path / "prid"), split_id=3)
    _check_against_parser(data, splits)
    _, counts = build_lib.summary(data)
    assert [counts[s]["tracklets"] for s in ("train", "query", "gallery")] == [6, 3, 3]
    assert data.camera_names == ["cam_a", "cam_b"]
    assert info["train_ids"] == counts["train"]["ids"]


def test_folder_builder_for_own_data(tmp_path):
    expected = fixtures.write_folder(str(tmp_path / "shop"))
    data = _build("folder", tmp_path / "shop", tmp_path / "tfds", prefix="shop")
    _check_against_parser(data, folder.load(str(tmp_path / "shop")))
    _, counts = build_lib.summary(data)
    assert counts == expected
    assert sorted(set(data.splits["train"].camid)) == [0, 1, 2]
    assert data.camera_names == ["cam1", "cam2", "cam3"]  # the folder names' camera part
    assert data.splits["query"].source[0] == os.path.join("query", "dave", "cam1_f", "000.jpg")


def test_stored_order_needs_disable_shuffling(tmp_path):
    """TFDS stores examples in hashed-key order unless `disable_shuffling` is set: the trap
    the builders avoid. With shuffling, frame i no longer holds generated frame i."""
    fixtures.write_mars(str(tmp_path / "raw"))
    data = _build("mars", tmp_path / "raw", tmp_path / "ordered")
    tracklet_of = [data.source[i]["tracklet"] for i in range(data.num_frames)]
    assert tracklet_of == sorted(tracklet_of)  # stored = generated order

    class Shuffled(MarsBuilder, skip_registration=True):
        def _info(self):
            info = super()._info()
            info.as_proto.disable_shuffling = False
            return info

    builder = Shuffled(
        config=ReIDConfig.parse("16x8"), data_dir=str(tmp_path / "shuffled"),
        file_format="array_record",
    )  # fmt: skip
    builder.workers = 1
    builder.download_and_prepare(
        download_config=__import__("tensorflow_datasets").download.DownloadConfig(
            manual_dir=str(tmp_path / "raw")
        )
    )
    shuffled = builder.as_data_source(split="frames")
    assert [shuffled[i]["tracklet"] for i in range(len(shuffled))] != tracklet_of


def test_simplejpeg_decode_equals_pil(tmp_path):
    """The reader's libjpeg-turbo decode gives PIL's pixels for every stored frame: at-size
    JPEGs (MARS fixture), resized ones and PNG sources re-encoded (iLIDS-VID fixture)."""
    fixtures.write_mars(str(tmp_path / "mars"))
    fixtures.write_ilidsvid(str(tmp_path / "ilids"))
    for data in (
        _build("mars", tmp_path / "mars", tmp_path / "tfds"),
        _build("mars", tmp_path / "mars", tmp_path / "tfds", size=(48, 24)),
        _build("ilidsvid", tmp_path / "ilids", tmp_path / "tfds", size=(40, 20)),
    ):
        frames = data.frames(np.arange(data.num_frames))
        for i in range(data.num_frames):
            np.testing.assert_array_equal(frames[i], _pil(data.encoded(i)))


def test_corrupt_jpeg_stops_the_build_and_leaves_nothing(tmp_path):
    fixtures.write_dukev(str(tmp_path / "raw"))
    bad = sorted((tmp_path / "raw" / "gallery").rglob("*.jpg"))[1]
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    with pytest.raises(DatasetError, match=f"corrupt or unreadable image {bad}"):
        _build("dukev", tmp_path / "raw", tmp_path / "tfds")
    left = [p for p in (tmp_path / "tfds").rglob("*") if p.is_file() and ".config" not in str(p)]
    assert left == []
    with pytest.raises(DatasetError, match=r"is not prepared in .*python -m input_pipeline build"):
        ReIDDataset("dukev", "16x8", str(tmp_path / "tfds"))
    bad.unlink()
    _build("dukev", tmp_path / "raw", tmp_path / "tfds", size=(32, 16))
    with pytest.raises(DatasetError, match=r"\(prepared there: 32x16\): .* --size 16x8"):
        ReIDDataset("dukev", "16x8", str(tmp_path / "tfds"))


def test_cli_summary_json_and_errors(tmp_path):
    fixtures.write_dukev(str(tmp_path / "raw"))
    run = [sys.executable, "-m", "input_pipeline", "build", "--data_dir", str(tmp_path / "tfds")]
    out = subprocess.run(
        [*run, "--dataset", "dukev", "--manual_dir", str(tmp_path / "raw"), "--size", "16x8"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert "split     ids  cams  tracklets     frames" in out.stdout
    # Its own lines only: not TFDS's "Downloading and preparing dataset" (nothing is
    # downloaded), INFO records, or progress bars' escape codes in a file.
    assert "Downloading" not in out.stdout + out.stderr, out.stdout[:2000]
    assert not any(c in out.stdout + out.stderr for c in "\r\x1b"), out.stderr[:2000]
    assert not re.search(r"^I\d{4} ", out.stderr, re.MULTILINE), out.stderr[:2000]
    assert json.loads(lines[-1]) == {
        "train": {"tracklets": 5, "ids": 3, "frames": 18},
        "query": {"tracklets": 2, "ids": 2, "frames": 6},
        "gallery": {"tracklets": 4, "ids": 3, "frames": 11},
    }
    missing = subprocess.run(
        [*run, "--dataset", "mars", "--manual_dir", str(tmp_path / "nowhere")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert (
        missing.stderr.startswith("error: mars needs --manual_dir")
        and "bbox_train" in missing.stderr
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["build", "--help"], None),
        (["build", "--dataset", "synthetic", "--sise", "16x8"], "Unknown command line flag 'sise'"),
        (["build", "--dataset", "synthetic", "--size", "16"], "--size must be HxW"),
        (["build", "--dataset", "folder", "--manual_dir", "x"], "needs --name NAME"),
        (["inspect", "--dataset", "mars"], "inspect needs --manual_dir"),
    ],
    ids=["help", "unknown flag", "bad size", "folder without name", "inspect without folder"],
)
def test_data_command_help_and_mistakes(args, words, tmp_path):
    """`python -m input_pipeline` (the `reidjax-data` command): --help exits 0 with the
    usage; a mistake exits 1 with one `error:` line naming it, before anything is built."""
    done = subprocess.run(
        [sys.executable, "-m", "input_pipeline", *args, "--data_dir", str(tmp_path / "tfds")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if words is None:
        assert done.returncode == 0 and "--manual_dir" in done.stdout, done.stderr[-2000:]
        return
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: ") and words in lines[0], lines
    assert not (tmp_path / "tfds").exists()


def test_tfds_build_command_gives_the_same_dataset(tmp_path):
    """TFDS's own `tfds build` code path (tools/tfds_build.py runs it without TensorFlow)
    on a builder folder writes the same frames as `python -m input_pipeline build`."""
    fixtures.write_mars(str(tmp_path / "raw"))
    ours = _build("mars", tmp_path / "raw", tmp_path / "ours", size=(128, 64))
    subprocess.run(
        [sys.executable, "tools/tfds_build.py", "input_pipeline/builders/mars",
         f"--manual_dir={tmp_path / 'raw'}", f"--data_dir={tmp_path / 'theirs'}",
         "--config=128x64", "--file_format=array_record"],
        capture_output=True, text=True, cwd=ROOT, check=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip
    theirs = ReIDDataset("mars", "128x64", str(tmp_path / "theirs"))
    assert theirs.num_frames == ours.num_frames
    assert all(theirs.encoded(i) == ours.encoded(i) for i in range(ours.num_frames))
    for split in ("train", "query", "gallery"):
        np.testing.assert_array_equal(theirs.splits[split].first, ours.splits[split].first)


def test_tensorflow_is_never_imported(tmp_path):
    """Building, reading and making a training batch import no TensorFlow."""
    code = f"""
import sys
from input_pipeline.build import build_dataset
from input_pipeline.pipelines import TrainSpec, train_dataset
data = build_dataset("synthetic", "ids8_cams3_seed0_32x16", {str(tmp_path)!r}, quiet=True)
batch = train_dataset(data, TrainSpec(ids_per_batch=2, clips_per_id=2, num_frames=2))[0]
assert batch["clips"].shape == (4, 2, 32, 16, 3)
print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
