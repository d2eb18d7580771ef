"""Rank a gallery of your own tracklets against queries with a trained model.

    python -m reidjax.serving.search --workdir runs/demo --query DIR --gallery DIR [--top 10]
    python -m reidjax.serving.search ... --ids ids.txt        # also CMC / mAP
    python -m reidjax.serving.search ... --save_index g.npz   # later: --index g.npz, no --gallery
    python -m reidjax.serving.search ... --threshold auto     # same person or not, per match

Each of `--query` and `--gallery` holds one sub-folder of frames per tracklet (any frame
size; .jpg/.jpeg/.png/.bmp, in file-name order); the sub-folder's name names the tracklet.
They may also be the `query` and `gallery` folders of the dataset layout the folder
builder reads (`<identity>/<camera>_<tracklet>/`, docs/data.md): identities and cameras
then come from the folder names, numbered as the builder numbers them, and the CMC and
mAP are computed without `--ids`.
The model and its test rule come from the run (`reidjax.serving.inference.Embedder`).
`--save_index FILE` saves the gallery's features with their names and frame paths (and the
run and checkpoint they came from); `--index FILE` searches that gallery again without
embedding it (instead of `--gallery`; a gallery of another checkpoint is refused).
`--threshold` marks each match as the same person or not: a distance, or the run's own
operating point from its evaluation (`auto`: the distance at a false-positive rate of 1e-3
over cross-camera pairs; `fpr_0.01`; `eer`). Prints each query's top matches and writes
to `--out` (default WORKDIR/search):

    ranking.json     per query: the top gallery tracklets with their distances (and, with
                     --ids, the metrics)
    retrieval.png    queries and their top matches (green/red with --ids, grey without)

`--ids` is a text file of lines `<tracklet> <identity> [<camera>]`, where `<tracklet>` is a
sub-folder name (or `query/<name>`, `gallery/<name>` when both folders use it). Without
cameras, queries count as camera 0 and the gallery as camera 1, so no gallery item is
discarded as a same-camera match. `--config.KEY=VALUE` changes the run's config (e.g.
`--config.eval.batch_size=64`). Exit status: 0, or 1 with one `error:` line.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
from absl import app, flags

from input_pipeline.records import TrackletIndex
from reidjax import cli
from reidjax.evaluation import metrics, thresholds, visualize
from reidjax.runtime import workdir_io
from reidjax.runtime.workdir import Workdir
from reidjax.serving.inference import (
    Embedder,
    InputError,
    TrackletFrames,
    dataset_labels,
    tracklet_folders,
)

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run.", required=True)
_QUERY = flags.DEFINE_string("query", None, "Folder of query tracklet folders.", required=True)
_GALLERY = flags.DEFINE_string("gallery", None, "Folder of gallery tracklet folders.")
_INDEX = flags.DEFINE_string("index", None, "A gallery saved with --save_index (no --gallery).")
_SAVE_INDEX = flags.DEFINE_string("save_index", None, "Save the gallery's features here (.npz).")
_THRESHOLD = flags.DEFINE_string(
    "threshold", None, "Same-person distance: a number, auto (FPR 1e-3 of the run), fpr_0.01, eer."
)
_TOP = flags.DEFINE_integer("top", 10, "Matches shown and written per query.", lower_bound=1)
_IDS = flags.DEFINE_string("ids", None, "tracklet -> identity [camera] file: also CMC / mAP.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, best or a step.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default WORKDIR/search).")


def read_ids(path: str, names: dict[str, list[str]]) -> tuple[dict, list[str]]:
    """`--ids` -> ({split: (pids, camids)}, camera names by camid); every tracklet must be
    listed. Integer identities keep their number; others are numbered in order of
    appearance."""
    from reidjax.serving.inference import InputError

    entries = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) not in (2, 3):
                raise InputError(f"{path}:{number}: expected '<tracklet> <identity> [<camera>]'")
            entries[fields[0]] = fields[1:]
    numeric = all(f[0].lstrip("-").isdigit() for f in entries.values())
    identity_ids: dict[str, int] = {}
    camera_ids: dict[str, int] = {}
    out = {}
    for split, split_names in names.items():
        pids, camids = [], []
        for name in split_names:
            fields = entries.get(f"{split}/{name}", entries.get(name))
            if fields is None:
                raise InputError(f"{path} does not list the {split} tracklet {name!r}")
            pids.append(
                int(fields[0]) if numeric else identity_ids.setdefault(fields[0], len(identity_ids))
            )
            if len(fields) == 2:
                camids.append(camera_ids.setdefault(fields[1], len(camera_ids)))
            else:
                camids.append(0 if split == "query" else 1)
        out[split] = (np.asarray(pids), np.asarray(camids))
    cameras = list(camera_ids) or ["query camera", "gallery camera"]
    return out, cameras


def save_index(path, embedder, workdir, names, tracklets, features) -> None:
    """The gallery's features, names and frame paths, with the run and checkpoint."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        features=features,
        names=np.asarray(names, dtype=str),
        frames=np.asarray(["\n".join(map(str, t)) for t in tracklets], dtype=str),
        workdir=np.asarray(os.path.abspath(workdir)),
        step=np.asarray(embedder.step),
    )
    workdir_io.write_bytes(path, buffer.getvalue())


def load_index(path, embedder, workdir) -> tuple[list[str], list[list[str]], np.ndarray]:
    """(names, frame paths, features) of a `save_index` file made with the same run and
    checkpoint.

    Raises:
        InputError: no such file, not an index, or another run's or checkpoint's features.
    """
    try:
        with np.load(path) as f:
            saved = {k: f[k] for k in ("features", "names", "frames", "step", "workdir")}
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"{path} is not a gallery index of reidjax.serving.search: {e}") from e
    made_by = (os.path.realpath(str(saved["workdir"])), int(saved["step"]))
    if made_by != (os.path.realpath(workdir), embedder.step):
        raise InputError(
            f"{path} holds features of {made_by[0]} at step {made_by[1]}, not of "
            f"{workdir} at step {embedder.step}: embed the gallery again with --gallery"
        )
    frames = [str(t).split("\n") for t in saved["frames"]]
    return [str(n) for n in saved["names"]], frames, saved["features"]


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS

    def run() -> int:
        if bool(args.gallery) == bool(args.index):
            raise InputError("give either --gallery DIR or --index FILE")
        q_names, q_tracklets = tracklet_folders(args.query)
        embedder = Embedder.from_workdir(args.workdir, args.checkpoint, cli.overrides())
        if args.index:
            g_names, g_tracklets, gf = load_index(args.index, embedder, args.workdir)
        else:
            g_names, g_tracklets = tracklet_folders(args.gallery)
        threshold = None
        if args.threshold:
            threshold = thresholds.run_threshold(args.workdir, args.threshold)
        print(
            f"{embedder.config.model.name} of {args.workdir} (step {embedder.step}); "
            f"{len(q_names)} query and {len(g_names)} gallery tracklets",
            flush=True,
        )
        qf = embedder.embed(q_tracklets, q_names, progress=print)
        if not args.index:
            gf = embedder.embed(g_tracklets, g_names, progress=print)
        if args.save_index:
            save_index(args.save_index, embedder, args.workdir, g_names, g_tracklets, gf)
            print(f"wrote the gallery index {args.save_index}")
        distances = metrics.pairwise_distances(qf, gf, embedder.config.eval.distance)
        top = min(args.top, len(g_names))
        order = np.argsort(distances, axis=1, kind="stable")[:, :top]
        ranking = {
            q: [{"gallery": g_names[j], "distance": float(distances[i, j])} for j in order[i]]
            for i, q in enumerate(q_names)
        }
        if threshold is not None:
            for matches in ranking.values():
                for m in matches:
                    m["same_person"] = m["distance"] <= threshold
            found = sum(any(m["same_person"] for m in ms) for ms in ranking.values())
            print(f"threshold {threshold:.4g}: {found} of {len(q_names)} queries have a match")
        for q, matches in list(ranking.items())[:20]:
            shown = ", ".join(f"{m['gallery']} ({m['distance']:.3g})" for m in matches[:5])
            print(f"{q}: {shown}")
        if len(ranking) > 20:
            print(f"... {len(ranking) - 20} more queries in ranking.json")
        out = args.out or Workdir(args.workdir).search
        report = {"workdir": args.workdir, "step": embedder.step, "ranking": ranking}
        if threshold is not None:
            report["threshold"] = threshold
        names = {"query": q_names, "gallery": g_names}
        labelled = dataset_labels(names)
        ids, cameras = read_ids(args.ids, names) if args.ids else labelled or (None, [])
        pid = {s: np.full(len(n), -1) for s, n in names.items()}
        cam = {"query": np.zeros(len(q_names), int), "gallery": np.ones(len(g_names), int)}
        if ids is not None:
            pid = {s: ids[s][0] for s in names}
            cam = {s: ids[s][1] for s in names}
            result = metrics.evaluate_rank(
                distances, pid["query"], pid["gallery"], cam["query"], cam["gallery"],
                max_rank=min(20, len(g_names)),
            )  # fmt: skip
            numbers = {
                **{f"R{k}": round(100 * float(result["cmc"][k - 1]), 2)
                   for k in (1, 5, 10, 20) if k <= len(result["cmc"])},
                "mAP": round(100 * float(result["mAP"]), 2),
                "mINP": round(100 * float(result["mINP"]), 2),
            }  # fmt: skip
            report["metrics"] = numbers
            print("  ".join(f"{k} {v:.2f}" for k, v in numbers.items()))
        workdir_io.write_text(f"{out}/ranking.json", json.dumps(report, indent=1))
        frames = TrackletFrames(q_tracklets + g_tracklets, embedder.frame_size)
        first, count = frames.index.first, frames.index.count
        nq = len(q_names)
        picture = visualize.Ranking(
            TrackletIndex(pid["query"], cam["query"], first[:nq], count[:nq]),
            TrackletIndex(pid["gallery"], cam["gallery"], first[nq:], count[nq:]),
            distances,
        )
        visualize.retrieval_grid(
            picture, frames, f"{out}/retrieval.png", top=args.top,
            names=None if ids is not None else names, camera_names=cameras,
        )  # fmt: skip
        print(f"wrote {out}/ranking.json and retrieval.png")
        return 0

    return cli.run_or_explain(run)


def run() -> None:
    """The console command (`[project.scripts]` in pyproject.toml)."""
    cli.console(main)


if __name__ == "__main__":
    run()
