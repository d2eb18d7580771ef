"""Using a trained model: the embedder, reidjax.serving.search, the export, accelerator lowering."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from input_pipeline import build as build_lib
from input_pipeline.builders import config_name
from reidjax import experiment
from reidjax.evaluation import metrics
from reidjax.evaluation.evaluator import Evaluator
from reidjax.evaluation.features import FeatureExtractor
from reidjax.serving.inference import (
    Embedder,
    InputError,
    load_frame,
    same_person,
    tracklet_folders,
)
from tests.shared import copy_run, once

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def write_split_folders(data, root) -> pathlib.Path:
    """The query and gallery of a prepared dataset as image folders (the stored JPEG bytes,
    one folder per tracklet) and an ids file: what a user would hand to reidjax.serving.search."""
    lines = []
    for split in ("query", "gallery"):
        index = data.splits[split]
        for t in range(len(index)):
            folder = root / split / f"{split[0]}{t:04d}"
            folder.mkdir(parents=True)
            for f in range(int(index.count[t])):
                (folder / f"{f:04d}.jpg").write_bytes(data.encoded(int(index.first[t]) + f))
            lines.append(f"{split}/{folder.name} {index.pid[t]} {index.camid[t]}")
    (root / "ids.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def run(dsanet_run, tmp_path_factory):
    """The shared DSANet smoke run (trained and evaluated once per test run) and its test
    split as folders."""
    config, workdir = dsanet_run.config, dsanet_run.workdir
    data = experiment.setup(config, train=False).data
    folders = once(tmp_path_factory, "synthetic_folders", lambda f: write_split_folders(data, f))
    return config, workdir, data, folders


def test_embedder_gives_the_evaluator_features(run):
    """One test rule: the embedder's features of the query tracklets, given as image files
    and as uint8 arrays at the run's size, equal the evaluator's."""
    config, workdir, data, folders = run
    embedder = Embedder.from_workdir(str(workdir))
    assert embedder.step == config.train.num_steps
    run = experiment.setup(config, train=False)
    evaluator = Evaluator(run.model.predict, experiment.eval_spec(config), data, run.mesh, None)
    want = evaluator.extract(embedder.variables, data, data.splits["query"])
    names, files = tracklet_folders(str(folders / "query"))
    assert names == [f"q{t:04d}" for t in range(len(names))]
    got = embedder.embed(files)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    arrays = [np.stack([load_frame(p, embedder.frame_size) for p in t]) for t in files]
    np.testing.assert_allclose(embedder.embed(arrays), want, atol=1e-5)
    with pytest.raises(InputError, match="tracklet 1 has no frames"):
        embedder.embed([files[0], []])


def test_search_cli_reproduces_the_evaluation(run, tmp_path):
    _, workdir, data, folders = run
    out = tmp_path / "search"
    result = subprocess.run(
        [sys.executable, "-m", "reidjax.serving.search", "--workdir", str(workdir),
         "--query", str(folders / "query"), "--gallery", str(folders / "gallery"),
         "--ids", str(folders / "ids.txt"), "--out", str(out), "--top", "5"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trained = json.loads((workdir / "eval" / "results.json").read_text())
    report = json.loads((out / "ranking.json").read_text())
    assert report["metrics"]["mAP"] == trained["mAP"] and report["metrics"]["R1"] == trained["R1"]
    assert len(report["ranking"]) == len(data.splits["query"])
    assert all(len(r) == 5 for r in report["ranking"].values())
    assert (out / "retrieval.png").stat().st_size > 10_000
    empty = tmp_path / "empty"
    empty.mkdir()  # the command's first read (its one-line error: tests/test_config_errors.py)
    with pytest.raises(InputError, match="holds no tracklet folder"):
        tracklet_folders(str(empty))
    # The dataset layout (<identity>/<camera>_<tracklet>/): labels from the folder names.
    layout = tmp_path / "layout"
    for split in ("query", "gallery"):
        index = data.splits[split]
        for t in range(len(index)):
            target = layout / split / f"{index.pid[t]:04d}" / f"c{index.camid[t]}_{t:04d}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folders / split / f"{split[0]}{t:04d}", target)
    labelled = subprocess.run(
        [sys.executable, "-m", "reidjax.serving.search", "--workdir", str(workdir),
         "--query", str(layout / "query"), "--gallery", str(layout / "gallery"),
         "--out", str(tmp_path / "layout_search")],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert labelled.returncode == 0, labelled.stderr[-3000:]
    report = json.loads((tmp_path / "layout_search" / "ranking.json").read_text())
    assert report["metrics"]["mAP"] == trained["mAP"] and report["metrics"]["R1"] == trained["R1"]


def test_bn_variance_bench_runs_on_a_trained_run(run):
    """bench/bn_unbiased_variance.py on the smoke run (with the run's own config.json):
    both BN variance conventions evaluate, and the JSON line reports them."""
    config, workdir, _, _ = run
    done = subprocess.run(
        [sys.executable, "bench/bn_unbiased_variance.py", "--workdir", str(workdir)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["step"] == config.train.num_steps and {"unbiased", "biased"} <= set(report)


def test_export_reloads_in_a_fresh_process(run, tmp_path):
    """reidjax/serving/export.py for cpu, cuda and tpu; a fresh process with only jax and numpy (and
    reidjax.serving.exported) gives the checkpoint's features."""
    _, workdir, _, folders = run
    path = tmp_path / "model.bin"
    result = subprocess.run(
        [sys.executable, "-m", "reidjax.serving.export", "--workdir", str(workdir), "--platforms",
         "cpu,cuda,tpu", "--out", str(path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "for cpu, cuda, tpu" in result.stdout
    # Its own lines only: no INFO records of orbax or JAX (27 lines before the command did).
    assert not re.search(r"^I\d{4} ", result.stderr, re.MULTILINE), result.stderr[:2000]
    embedder = Embedder.from_workdir(str(workdir))
    _, files = tracklet_folders(str(folders / "gallery"))
    arrays = [np.stack([load_frame(p, embedder.frame_size) for p in t]) for t in files]
    np.save(tmp_path / "frames.npy", np.array(arrays, dtype=object), allow_pickle=True)
    resized = [  # PNG files at another size
        write_resized(t, tmp_path / "resized" / f"t{k}") for k, t in enumerate(files[:3])
    ]
    code = f"""
import sys, numpy as np
from reidjax.serving.exported import load
model = load({str(path)!r})
frames = np.load({str(tmp_path / "frames.npy")!r}, allow_pickle=True)
np.save({str(tmp_path / "exported.npy")!r}, model.embed(list(frames)))
np.save({str(tmp_path / "resized.npy")!r}, model.embed({resized!r}))
heavy = ("flax", "optax", "orbax", "tensorflow_datasets", "tensorflow", "grain")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
"""
    fresh = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert fresh.stdout.strip().splitlines()[-1] == "[]"  # no model code needed
    np.testing.assert_allclose(np.load(tmp_path / "exported.npy"), embedder.embed(files), atol=1e-5)
    np.testing.assert_allclose(
        np.load(tmp_path / "resized.npy"), embedder.embed(resized), atol=1e-5
    )


def write_resized(frames, folder, scale=(1.5, 2.0)) -> list[str]:
    """Copies of a tracklet's frames at another size (bicubic) as PNG files in `folder`:
    frames a user might have. Returns their paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True)
    paths = []
    for f, path in enumerate(frames):
        with Image.open(path) as image:
            w, h = image.size
            big = image.convert("RGB").resize((int(w * scale[1]), int(h * scale[0])))
        paths.append(str(folder / f"{f:04d}.png"))
        big.save(paths[-1])
    return paths


def test_frames_of_another_size_get_the_evaluation_features(run, tmp_path):
    """One answer per tracklet: frames at another size than the run's, given to the
    Embedder as files, give the features `eval.py` computes on the folder dataset built
    from the same files (the builders resize and store JPEG quality 95; the Embedder
    prepares frames with the same function)."""
    _, workdir, data, folders = run
    embedder = Embedder.from_workdir(str(workdir))
    root = tmp_path / "shop"
    for split in ("query", "gallery"):
        index = data.splits[split]
        names, files = tracklet_folders(str(folders / split))
        for t in range(min(6, len(names))):
            pid, cam = int(index.pid[t]), int(index.camid[t])
            for s in ("train", split) if split == "query" else (split,):
                write_resized(files[t], root / s / f"{pid:04d}" / f"c{cam}_{split}{t:03d}")
    size = embedder.frame_size
    built = build_lib.build_dataset(
        "folder", config_name(size, prefix="shop"), str(tmp_path / "tfds"), str(root),
        workers=1, quiet=True,
    )  # fmt: skip
    query = built.splits["query"]
    extract = FeatureExtractor(
        embedder.model.predict, experiment.eval_spec(embedder.config), embedder.mesh, None
    )
    evaluated = extract(embedder.variables, built, query)
    paths = [
        sorted(str(p) for p in (root / os.path.dirname(query.source[t])).iterdir())
        for t in range(len(query))
    ]
    assert all(pathlib.Path(p[0]).suffix == ".png" for p in paths)
    np.testing.assert_allclose(embedder.embed(paths), evaluated, atol=1e-5)


def test_tsne_tool_maps_and_saves_every_output(run, tmp_path):
    """tools/tsne_plot.py on the smoke DSANet run: the test feature and f_cam of every test
    tracklet saved (the embedding equal to the evaluator's), the picture drawn; an output
    the model lacks is one line naming the ones it has."""
    _, workdir, data, _ = run
    out = tmp_path / "tsne"
    command = [sys.executable, "tools/tsne_plot.py", "--workdir", str(workdir), "--out", str(out)]
    done = subprocess.run(
        [*command, "--outputs", "test,f_cam"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = np.load(out / "features.npz")
    n = len(data.splits["query"]) + len(data.splits["gallery"])
    assert saved["features"].shape[0] == saved["f_cam"].shape[0] == n  # DSANet's test feature
    assert saved["tsne_f_cam"].shape == (int(saved["drawn"].sum()), 2)
    embedder = Embedder.from_workdir(str(workdir))
    run_ = experiment.setup(embedder.config, train=False)
    evaluator = Evaluator(
        run_.model.predict, experiment.eval_spec(embedder.config), data, run_.mesh, None
    )
    want = evaluator.extract(embedder.variables, data, data.splits["query"])
    np.testing.assert_allclose(saved["features"][: len(want)], want, atol=1e-5)
    assert (out / "tsne.png").stat().st_size > 10_000
    bad = subprocess.run([*command, "--outputs", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "f_cam" in bad.stderr


def test_cross_dataset_eval_on_a_synthetic_variant(run, tmp_path):
    """eval.py --test_on: the smoke run (16 identities, 4 cameras) tested on another
    prepared variant (12 identities, 3 cameras, other people): the run's model is restored
    with its own classifier sizes, the report says what it was trained and tested on, and
    the numbers equal the metrics of the Embedder's features of the variant's tracklets."""
    config, shared, _, _ = run
    workdir = copy_run(shared, tmp_path / "run")  # the report is written into the run
    result = subprocess.run(
        [sys.executable, "eval.py", "--workdir", str(workdir), "--test_on", "synthetic",
         "--config.dataset.synthetic_ids=12", "--config.dataset.synthetic_cameras=3",
         f"--config.dataset.data_dir={tmp_path / 'data'}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run on synthetic" in result.stdout
    report = json.loads((workdir / "eval" / "on_synthetic" / "results.json").read_text())
    assert report["trained_on"] == "synthetic" and "12 ids, 3 cameras" in report["dataset"]
    variant = config.copy_and_resolve_references()
    with variant.unlocked():
        variant.dataset.synthetic_ids, variant.dataset.synthetic_cameras = 12, 3
        variant.dataset.data_dir = str(tmp_path / "data")
    data = experiment.setup(variant, train=False).data
    assert len(data.camera_names) == 3
    embedder = Embedder.from_workdir(str(workdir))
    features = {}
    for split in ("query", "gallery"):
        index = data.splits[split]
        frames = [index.first[t] + np.arange(index.count[t]) for t in range(len(index))]
        tracklets = [data.frames(f) for f in frames]
        features[split] = embedder.embed(tracklets)
    q, g = data.splits["query"], data.splits["gallery"]
    expected = metrics.evaluate_rank(
        1 - features["query"] @ features["gallery"].T, q.pid, g.pid, q.camid, g.camid
    )
    assert report["mAP"] == pytest.approx(100 * expected["mAP"], abs=0.01)
    assert report["R1"] == pytest.approx(100 * expected["cmc"][0], abs=0.01)


def test_saved_gallery_threshold_and_same_person(run, tmp_path):
    """The final evaluation writes the same-person thresholds; search --save_index then
    --index ranks as embedding the gallery again; --threshold auto uses the run's FPR 1e-3
    distance; same_person agrees with it; a file that is not an index is refused."""
    _, workdir, _, folders = run
    trained = json.loads((workdir / "eval" / "results.json").read_text())
    points = trained["thresholds"]
    assert points["positive_pairs"] > 0 and points["negative_pairs"] > 0
    assert 0 < points["fpr_0.001"]["distance"] <= points["fpr_0.01"]["distance"]

    def search(*extra, out):
        done = subprocess.run(
            [sys.executable, "-m", "reidjax.serving.search", "--workdir", str(workdir),
             "--query", str(folders / "query"), "--out", str(out), *extra],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done

    index = tmp_path / "gallery.npz"
    first = search("--gallery", str(folders / "gallery"), "--save_index", str(index),
                   "--threshold", "auto", out=tmp_path / "a")  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    again = search("--index", str(index), out=tmp_path / "b")
    assert again.returncode == 0, again.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "ranking.json").read_text())
    b = json.loads((tmp_path / "b" / "ranking.json").read_text())
    strip = {q: [m["gallery"] for m in ms] for q, ms in a["ranking"].items()}
    assert strip == {q: [m["gallery"] for m in ms] for q, ms in b["ranking"].items()}
    assert a["threshold"] == points["fpr_0.001"]["distance"]
    for matches in a["ranking"].values():
        assert all(m["same_person"] == (m["distance"] <= a["threshold"]) for m in matches)
    from reidjax.serving.search import load_index  # the command's module (it defines its flags)

    embedder = Embedder.from_workdir(str(workdir))
    with pytest.raises(InputError, match="is not a gallery index"):
        load_index(str(tmp_path / "a" / "ranking.json"), embedder, str(workdir))
    q_names, q_files = tracklet_folders(str(folders / "query"))
    same, distance = same_person(embedder, q_files[0], q_files[0])
    assert same and distance < 1e-5
    q_name, top = next(iter(a["ranking"].items()))
    g_names, g_files = tracklet_folders(str(folders / "gallery"))
    q, g = q_files[q_names.index(q_name)], g_files[g_names.index(top[0]["gallery"])]
    decided, d = same_person(embedder, q, g)
    assert d == pytest.approx(top[0]["distance"], abs=1e-5) and decided == top[0]["same_person"]


def test_tracks_command_on_a_rendered_two_camera_scene(run, tmp_path):
    """tools/tracks_demo.py renders a two-camera scene with ground-truth MOT files and
    scores the association; python -m reidjax.serving.tracks on that scene writes per-camera MOT
    files with global identities (every kept box once; never two overlapping tracks of
    one camera under one identity), identities.json and the picture."""
    _, workdir, _, _ = run
    demo = subprocess.run(
        [sys.executable, "tools/tracks_demo.py", "--workdir", str(workdir), "--out",
         str(tmp_path), "--people", "4"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    scores = json.loads(demo.stdout.strip().splitlines()[-1])
    assert scores["tracks"] == 7 and 0 <= scores["trained"]["best"]["f1"] <= 1
    scene = tmp_path / "scene"
    out = tmp_path / "tracks"
    done = subprocess.run(
        [sys.executable, "-m", "reidjax.serving.tracks", "--workdir", str(workdir),
         "--out", str(out),
         "--camera", f"east={scene / 'east' / 'img1'},{scene / 'east' / 'gt.txt'}",
         "--camera", f"west={scene / 'west' / 'img1'},{scene / 'west' / 'gt.txt'}",
         "--threshold", "auto"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "identities" in done.stdout and "frames/s" in done.stdout
    report = json.loads((out / "identities.json").read_text())
    members = [(m["camera"], m["track"]) for v in report["identities"].values() for m in v]
    assert sorted(members) == sorted(set(members)) and len(members) == 7
    for tracks_of in report["identities"].values():
        for a in tracks_of:
            for b in tracks_of:
                if a is not b and a["camera"] == b["camera"]:
                    assert a["frames"][1] < b["frames"][0] or b["frames"][1] < a["frames"][0]
    for camera in ("east", "west"):
        gt = (scene / camera / "gt.txt").read_text().split()
        ours = (out / f"{camera}.txt").read_text().split()
        assert len(ours) == len(gt)  # every box kept, relabelled
        ids = {int(line.split(",")[1]) for line in ours}
        assert ids <= {int(k) for k in report["identities"]}
    assert (out / "identities.png").stat().st_size > 10_000
    # A file given as a camera's frames: tests/test_tracks.py (in process).


def test_release_round_trip(run, tmp_path):
    """reidjax/serving/make_release.py writes one archive (config, safetensors weights, results,
    checksums); Embedder.from_pretrained (a path, a file:// URL, the archive's SHA-256)
    gives the checkpoint's features and the run's thresholds; a damaged file or a wrong
    archive checksum is refused naming it."""
    from reidjax.serving.release import ReleaseError

    _, workdir, _, folders = run
    done = subprocess.run(
        [sys.executable, "-m", "reidjax.serving.make_release", "--workdir", str(workdir), "--out",
         str(tmp_path), "--name", "demo"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    archive = tmp_path / "demo.tar"
    digest = (tmp_path / "demo.tar.sha256").read_text().split()[0]
    _, files = tracklet_folders(str(folders / "query"))
    want = Embedder.from_workdir(str(workdir)).embed(files[:4])
    released = Embedder.from_pretrained(archive.as_uri(), sha256=digest)
    np.testing.assert_allclose(released.embed(files[:4]), want, atol=1e-6)
    assert released.step == Embedder.from_workdir(str(workdir)).step
    same, _ = same_person(released, files[0], files[0])  # thresholds from the release
    assert same
    with pytest.raises(ReleaseError, match="SHA-256"):
        Embedder.from_pretrained(str(archive), sha256="0" * 64)
    unpacked = tmp_path / "demo"
    with open(unpacked / "results.json", "a") as f:
        f.write(" ")
    with pytest.raises(ReleaseError, match=r"results\.json does not match its SHA-256"):
        Embedder.from_pretrained(str(unpacked))
