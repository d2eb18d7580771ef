"""A rendered two-camera scene with ground truth: what `python -m reidjax.serving.tracks`
gets right.

    python tools/tracks_demo.py --workdir runs/demo --out runs/demo/tracks_demo
    python tools/tracks_demo.py --workdir runs/demo --init    # the untrained model too

Renders people of the synthetic generator (test identities, never trained on) walking
across two cameras' frames (`<out>/scene/<camera>/img1/000001.jpg`, MOTChallenge layout),
some seen by both cameras, some by one, some entering a camera twice, and writes the
ground-truth tracks as MOTChallenge files (the tracker a user would run, made perfect).
It then runs the tracks command's association (`reidjax.serving.tracks.associate`) with the run's
model and threshold and scores the global identities against the truth: pairwise
precision and recall over track pairs, at the run's threshold and at the best threshold
for each model (the best F1 over all thresholds, so that the untrained model is judged
at its own best). Prints one JSON line last; writes the tracks command's outputs to
`<out>/trained` (and `<out>/init`).
"""

import json
import os
import sys

import jax
import numpy as np
from absl import app, flags
from PIL import Image

from input_pipeline.synthetic import render_tracklet
from reidjax import cli
from reidjax.evaluation import thresholds
from reidjax.runtime import sharding
from reidjax.serving.association import cluster, conflicts, pair_scores
from reidjax.serving.inference import Embedder
from reidjax.serving.tracks import associate, write_outputs
from reidjax.training import restore

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output folder (default WORKDIR/tracks_demo).")
_INIT = flags.DEFINE_bool("init", False, "Also score the untrained model (initial weights).")
_PEOPLE = flags.DEFINE_integer("people", 16, "People in the scene.")
_SEED = flags.DEFINE_integer("seed", 0, "Scene seed.")

FRAME = (420, 480)  # camera frame height, width: three rows of people
CAMERAS = {"east": 0, "west": 1}  # the synthetic camera each scene camera looks like


def plan(people: int, seed: int) -> list[dict]:
    """Appearances: (person, camera, first frame, length, row, direction). Persons 0..n/2
    cross both cameras, the rest one; every third also comes back to its camera. People
    overlap in time; consecutive ones walk in different rows (no occlusion)."""
    rng = np.random.default_rng(seed)
    out, start = [], {c: 1 for c in CAMERAS}
    for p in range(people):
        cams = list(CAMERAS) if p < (people + 1) // 2 else [list(CAMERAS)[p % 2]]
        visits = [(c, 0) for c in cams] + ([(cams[0], 1)] if p % 3 == 2 else [])
        for camera, visit in visits:
            length = int(rng.integers(24, 40))
            row = sum(a["camera"] == camera for a in out) % 3  # consecutive ones apart
            direction = int(rng.choice([-1, 1]))
            out.append(dict(person=p, camera=camera, visit=visit, first=start[camera],
                            length=length, row=row, direction=direction))  # fmt: skip
            start[camera] += int(rng.integers(10, 20))  # people overlap in time
    return out


def render(out: str, people: int, seed: int) -> dict:
    """Writes the scene; returns {camera: (frames dir, tracks file)} and the truth
    {camera/track: person}."""
    appearances = plan(people, seed)
    pids = 100 + np.random.default_rng(seed + 1).choice(100, people, replace=False)  # test ids
    h, w = FRAME
    sprite = (128, 64)
    cameras, truth = {}, {}
    for camera, cam in CAMERAS.items():
        mine = [a for a in appearances if a["camera"] == camera]
        last = max(a["first"] + a["length"] for a in mine)
        yy = np.linspace(0, 1, h)[:, None, None]
        base = (np.array([90, 110, 130]) if cam == 0 else np.array([140, 120, 95])) * (
            0.7 + 0.3 * yy
        )
        background = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
        frames = [background.copy() for _ in range(last)]
        rows = []
        for track, a in enumerate(mine, 1):
            person = int(pids[a["person"]])
            clip = render_tracklet(0, person, cam, 50 + a["visit"], a["length"], sprite)
            y0 = 10 + a["row"] * 136
            for f in range(a["length"]):
                t = f / max(a["length"] - 1, 1)
                x0 = int((t if a["direction"] > 0 else 1 - t) * (w - sprite[1]))
                frame = frames[a["first"] - 1 + f]
                frame[y0 : y0 + sprite[0], x0 : x0 + sprite[1]] = clip[f]
                rows.append(
                    f"{a['first'] + f},{track},{x0},{y0},{sprite[1]},{sprite[0]},1,-1,-1,-1"
                )
            truth[f"{camera}/{track}"] = a["person"]
        folder = os.path.join(out, "scene", camera, "img1")
        os.makedirs(folder, exist_ok=True)
        for i, frame in enumerate(frames, 1):
            Image.fromarray(frame.astype(np.uint8)).save(
                os.path.join(folder, f"{i:06d}.jpg"), quality=95
            )
        tracks = os.path.join(out, "scene", camera, "gt.txt")
        with open(tracks, "w") as f:
            f.write("\n".join(rows) + "\n")
        cameras[camera] = (folder, tracks)
    return cameras, truth


def best_threshold(distances, cannot, truth):
    """The threshold with the best pairwise F1, over the distances of all track pairs."""
    best = (-1.0, 0.0, None)
    for t in np.unique(np.round(distances[np.triu_indices(len(distances), 1)], 4)):
        s = pair_scores(cluster(distances, cannot, float(t)), truth)
        f1 = 2 * s["precision"] * s["recall"] / max(s["precision"] + s["recall"], 1e-12)
        if f1 > best[0]:
            best = (f1, float(t), s)
    return {"threshold": best[1], "f1": round(best[0], 4), **best[2]}


def score(embedder, cameras, truth_of, threshold, out, name) -> dict:
    specs = [(n, s, t) for n, (s, t) in cameras.items()]
    result = associate(embedder, specs, threshold, min_frames=8, min_height=32, progress=None)
    keys = [f"{t.camera}/{t.track_id}" for t in result["tracks"]]
    truth = np.asarray([truth_of[k] for k in keys])
    write_outputs(os.path.join(out, name), result, {"threshold": threshold, "model": name})
    at_run = pair_scores(result["labels"], truth)
    best = best_threshold(result["distances"], conflicts(result["tracks"]), truth)
    return {"at_run_threshold": at_run, "best": best, "identities": int(result["labels"].max() + 1)}


def main(argv):
    del argv
    workdir = _WORKDIR.value
    out = _OUT.value or os.path.join(workdir, "tracks_demo")

    def run() -> int:
        cameras, truth = render(out, _PEOPLE.value, _SEED.value)
        threshold = thresholds.run_threshold(workdir, "auto")
        embedder = Embedder.from_workdir(workdir)
        report = {"people": _PEOPLE.value, "tracks": len(truth), "threshold": threshold}
        report["trained"] = score(embedder, cameras, truth, threshold, out, "trained")
        if _INIT.value:
            variables, _ = restore.initial_variables(embedder.model, embedder.config)
            embedder.variables = jax.device_put(variables, sharding.replicated(embedder.mesh))
            report["init"] = score(embedder, cameras, truth, threshold, out, "init")
        print(json.dumps(report))
        return 0

    return cli.run_or_explain(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
