"""Rank a gallery of your own tracklets against queries with a trained model.

    python -m reidjax.search --workdir runs/demo --query DIR --gallery DIR [--top 10]
    python -m reidjax.search ... --ids ids.txt        # also CMC / mAP

Each of `--query` and `--gallery` holds one sub-folder of frames per tracklet (any frame
size; .jpg/.jpeg/.png/.bmp, in file-name order); the sub-folder's name names the tracklet.
They may also be the `query` and `gallery` folders of the dataset layout the folder
builder reads (`<identity>/<camera>_<tracklet>/`, docs/data.md): identities and cameras
then come from the folder names, numbered as the builder numbers them, and the CMC and
mAP are computed without `--ids`.
The model and its test rule come from the run (`reidjax.inference.Embedder`). Prints each
query's top matches and writes to `--out` (default WORKDIR/search):

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

import json
import sys

import numpy as np
from absl import app, flags

from reidjax import cli, metrics, visualize, workdir_io
from reidjax.data.records import TrackletIndex
from reidjax.inference import Embedder, TrackletFrames, dataset_labels, tracklet_folders
from reidjax.workdir import Workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run.", required=True)
_QUERY = flags.DEFINE_string("query", None, "Folder of query tracklet folders.", required=True)
_GALLERY = flags.DEFINE_string(
    "gallery", None, "Folder of gallery tracklet folders.", required=True
)
_TOP = flags.DEFINE_integer("top", 10, "Matches shown and written per query.", lower_bound=1)
_IDS = flags.DEFINE_string("ids", None, "tracklet -> identity [camera] file: also CMC / mAP.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, best or a step.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default WORKDIR/search).")


def read_ids(path: str, names: dict[str, list[str]]) -> tuple[dict, list[str]]:
    """`--ids` -> ({split: (pids, camids)}, camera names by camid); every tracklet must be
    listed. Integer identities keep their number; others are numbered in order of
    appearance."""
    from reidjax.inference import InputError

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


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS

    def run() -> int:
        q_names, q_tracklets = tracklet_folders(args.query)
        g_names, g_tracklets = tracklet_folders(args.gallery)
        embedder = Embedder.from_workdir(args.workdir, args.checkpoint, cli.overrides())
        print(
            f"{embedder.config.model.name} of {args.workdir} (step {embedder.step}); "
            f"{len(q_names)} query and {len(g_names)} gallery tracklets",
            flush=True,
        )
        qf = embedder.embed(q_tracklets, q_names, progress=print)
        gf = embedder.embed(g_tracklets, g_names, progress=print)
        distances = metrics.pairwise_distances(qf, gf, embedder.config.eval.distance)
        top = min(args.top, len(g_names))
        order = np.argsort(distances, axis=1, kind="stable")[:, :top]
        ranking = {
            q: [{"gallery": g_names[j], "distance": float(distances[i, j])} for j in order[i]]
            for i, q in enumerate(q_names)
        }
        for q, matches in list(ranking.items())[:20]:
            shown = ", ".join(f"{m['gallery']} ({m['distance']:.3g})" for m in matches[:5])
            print(f"{q}: {shown}")
        if len(ranking) > 20:
            print(f"... {len(ranking) - 20} more queries in ranking.json")
        out = args.out or Workdir(args.workdir).search
        report = {"workdir": args.workdir, "step": embedder.step, "ranking": ranking}
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


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
