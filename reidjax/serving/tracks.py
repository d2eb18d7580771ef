"""Tracker output in, cross-camera identities out.

    python -m reidjax.serving.tracks --workdir runs/demo \
        --camera entrance=/data/cam1/img1,/data/cam1/tracks.txt \
        --camera hall=/data/cam2/img1,/data/cam2/tracks.txt [--threshold auto] [--out DIR]

Each `--camera NAME=SOURCE,TRACKS` gives one camera: SOURCE a MOTChallenge frame folder
(`000001.jpg`, ... numbered from 1, as MOT17/MOT20 ship `img1/`), TRACKS a MOTChallenge
text file of a tracker's output (`frame,id,x,y,w,h,conf,...`, frames from 1, boxes in
pixels from the top-left; rows with conf 0, which MOT ground truth uses for "ignore", are
skipped). For every track the command crops its boxes (clipped to the frame), drops boxes
lower than `--min_height` pixels and then tracks with fewer than `--min_frames` boxes
(both printed), takes at most `--max_frames` boxes evenly spread over the track, prepares
each crop exactly as the dataset builders store a frame (`input_pipeline.frames`) and embeds
the track with the run's model and test rule (`reidjax.serving.inference.Embedder`).

Tracks are then grouped into global identities by agglomerative clustering with average
linkage on the run's distance (`eval.distance`): the two groups whose tracks are closest
on average merge, as long as that average is at most the threshold, and two groups never
merge when that would put two tracks of one camera that overlap in time under one
identity (one person is in one place at a time). Average linkage compares a mean pair
distance with the same-person threshold, which is a pair distance; it does not chain
identities through one look-alike pair as single linkage does. `--threshold auto` is the
run's own distance at a false-positive rate of 1e-3 over cross-camera pairs
(`reidjax.evaluation.thresholds`); `fpr_0.01`, `eer` or a number also work.

Writes to `--out` (default WORKDIR/tracks): `<camera>.txt` per camera (the tracker's rows
of the kept tracks with the global identity in the id column), `identities.json` (each
identity's tracks, and the dropped tracks with the reason) and `identities.png` (each
identity that more than one track joined, its tracks side by side). Exit status: 0, or 1
with one `error:` line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from absl import app, flags
from PIL import Image

from reidjax import cli
from reidjax.errors import UserError
from reidjax.evaluation import metrics, thresholds
from reidjax.runtime import workdir_io
from reidjax.serving.association import cluster, conflicts
from reidjax.serving.inference import Embedder, InputError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
PROGRESS_SECONDS = 10.0


@dataclasses.dataclass
class Track:
    """One tracker track of one camera: its boxes `[n, 4]` (x, y, w, h) in frames `[n]`."""

    camera: str
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    rows: list[list[str]] = dataclasses.field(repr=False, default_factory=list)

    @property
    def span(self) -> tuple[int, int]:
        return int(self.frames.min()), int(self.frames.max())


def read_mot(path: str, camera: str) -> list[Track]:
    """The tracks of a MOTChallenge text file, in track-id order.

    Raises:
        InputError: a missing file or a malformed line (named).
    """
    by_id: dict[int, list] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InputError(f"cannot read the tracks file {path}: {e}") from e
    for number, line in enumerate(lines, 1):
        fields = [x.strip() for x in line.split(",")]
        if not line.strip() or line.startswith("#"):
            continue
        try:
            frame, track, x, y, w, h = (
                int(float(fields[0])),
                int(float(fields[1])),
                *map(float, fields[2:6]),
            )
            conf = float(fields[6]) if len(fields) > 6 else 1.0
        except (ValueError, IndexError):
            raise InputError(
                f"{path}:{number}: expected 'frame,id,x,y,w,h[,conf,...]', got {line[:80]!r}"
            ) from None
        if conf == 0:
            continue
        by_id.setdefault(track, []).append((frame, (x, y, w, h), fields))
    tracks = []
    for track_id in sorted(by_id):
        rows = sorted(by_id[track_id], key=lambda r: r[0])
        tracks.append(
            Track(
                camera,
                track_id,
                np.asarray([r[0] for r in rows]),
                np.asarray([r[1] for r in rows], np.float64),
                [r[2] for r in rows],
            )
        )
    return tracks


def frame_paths(source: str) -> dict[int, str]:
    """{frame number: path} of a MOTChallenge frame folder (names are frame numbers).

    Raises:
        InputError: not a folder of numbered images (a video file needs a decoder that
            reidjax does not ship: extract its frames first, e.g. with ffmpeg).
    """
    if os.path.isfile(source):
        raise InputError(
            f"{source} is a file: give a folder of its frames (000001.jpg, ...), e.g. "
            f"ffmpeg -i {source} -start_number 1 -q:v 2 FOLDER/%06d.jpg"
        )
    if not os.path.isdir(source):
        raise InputError(f"no frame folder {source}")
    paths = {}
    for name in os.listdir(source):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in FRAME_SUFFIXES and stem.isdigit():
            paths[int(stem)] = os.path.join(source, name)
    if not paths:
        raise InputError(f"{source} holds no numbered frames (000001.jpg, ...)")
    return paths


def select(tracks: list[Track], min_frames: int, min_height: float):
    """(kept tracks, {"camera/id": why} of the dropped ones): boxes lower than
    `min_height` go first, then tracks with fewer than `min_frames` boxes left."""
    kept, dropped = [], {}
    for t in tracks:
        tall = t.boxes[:, 3] >= min_height
        if tall.sum() < min_frames:
            why = f"{int(tall.sum())} boxes of at least {min_height:g} px (< {min_frames})"
            dropped[f"{t.camera}/{t.track_id}"] = why
            continue
        rows = [r for r, keep in zip(t.rows, tall, strict=True) if keep]
        kept.append(Track(t.camera, t.track_id, t.frames[tall], t.boxes[tall], rows))
    return kept, dropped


def sample(n: int, count: int) -> np.ndarray:
    """At most `count` indices spread evenly over 0..n-1, in order."""
    if n <= count:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, count)).astype(int))


def crop_tracks(tracks: list[Track], frames: dict[int, str], max_frames: int, progress=print):
    """uint8 crops `[k, h, w, 3]` (as in the frame) of each track's sampled boxes; each
    frame image is read once for all the tracks that need it."""
    wanted: dict[int, list[tuple[int, int]]] = {}
    picks = []
    for i, t in enumerate(tracks):
        chosen = sample(len(t.frames), max_frames)
        picks.append(chosen)
        for k, j in enumerate(chosen):
            wanted.setdefault(int(t.frames[j]), []).append((i, k))
    crops = [[None] * len(p) for p in picks]
    start = last = time.perf_counter()
    for done, number in enumerate(sorted(wanted), 1):
        if number not in frames:
            raise InputError(f"the tracks name frame {number}, which the frame folder lacks")
        with Image.open(frames[number]) as image:
            image = np.asarray(image.convert("RGB"))
        height, width = image.shape[:2]
        for i, k in wanted[number]:
            x, y, w, h = tracks[i].boxes[picks[i][k]]
            x0, y0 = int(max(0, np.floor(x))), int(max(0, np.floor(y)))
            x1, y1 = int(min(width, np.ceil(x + w))), int(min(height, np.ceil(y + h)))
            if x1 <= x0 or y1 <= y0:  # a box entirely outside the frame: its nearest pixel
                x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
                x1, y1 = x0 + 1, y0 + 1
            crops[i][k] = image[y0:y1, x0:x1]
        now = time.perf_counter()
        if progress and (now - last > PROGRESS_SECONDS or done == len(wanted)):
            last = now
            progress(f"  read {done}/{len(wanted)} frames, {done / (now - start):.1f} frames/s")
    return crops


def parse_camera(spec: str) -> tuple[str, str, str]:
    """`NAME=SOURCE,TRACKS` -> (name, source, tracks).

    Raises:
        InputError: another form.
    """
    name, _, rest = spec.partition("=")
    source, _, tracks = rest.rpartition(",")
    if not name or not source or not tracks or "/" in name:
        raise InputError(f"--camera {spec!r}: expected NAME=SOURCE,TRACKS (a name without '/')")
    return name, source, tracks


def associate(
    embedder: Embedder,
    cameras: list[tuple[str, str, str]],
    threshold: float,
    *,
    min_frames: int = 8,
    min_height: float = 32,
    max_frames: int = 32,
    progress=print,
) -> dict:
    """Reads, filters, crops and embeds every camera's tracks and groups them (module
    docstring). Returns `{"tracks": kept [Track], "labels": [n], "features": [n, D],
    "crops": per track, "dropped": {...}, "distances": [n, n]}`. `progress`: None for
    silence."""
    progress = progress or (lambda line: None)
    kept, dropped, crops = [], {}, []
    for name, source, tracks_file in cameras:
        frames = frame_paths(source)
        tracks = read_mot(tracks_file, name)
        chosen, lost = select(tracks, min_frames, min_height)
        dropped.update(lost)
        progress(
            f"{name}: {len(tracks)} tracks, {len(chosen)} kept, {len(lost)} dropped "
            f"(< {min_frames} boxes of at least {min_height:g} px); {len(frames)} frames"
        )
        crops += crop_tracks(chosen, frames, max_frames, progress)
        kept += chosen
    if not kept:
        raise InputError("no track is long and large enough: lower --min_frames/--min_height")
    names = [f"{t.camera}/{t.track_id}" for t in kept]
    features = embedder.embed(crops, names, progress=progress)  # crops of any size each
    distances = metrics.pairwise_distances(features, features, embedder.config.eval.distance)
    labels = cluster(distances, conflicts(kept), threshold)
    return dict(tracks=kept, labels=labels, features=features, crops=crops, dropped=dropped,
                distances=distances)  # fmt: skip


def write_outputs(out: str, result: dict, meta: dict) -> dict:
    """`<camera>.txt`, `identities.json`, `identities.png` in `out`; returns the JSON."""
    tracks, labels = result["tracks"], result["labels"]
    by_camera: dict[str, list[str]] = {}
    for t, label in zip(tracks, labels, strict=True):
        lines = by_camera.setdefault(t.camera, [])
        for row in t.rows:
            lines.append(",".join([row[0], str(int(label) + 1), *row[2:]]))
    for camera, lines in by_camera.items():
        lines.sort(key=lambda line: (int(float(line.split(",")[0])), int(line.split(",")[1])))
        workdir_io.write_text(os.path.join(out, f"{camera}.txt"), "\n".join(lines) + "\n")
    identities = {}
    for t, label in zip(tracks, labels, strict=True):
        identities.setdefault(str(int(label) + 1), []).append(
            {
                "camera": t.camera,
                "track": t.track_id,
                "frames": list(t.span),
                "boxes": len(t.frames),
            }
        )
    report = {
        **meta,
        "identities": identities,
        "num_identities": len(identities),
        "across_cameras": sum(len({x["camera"] for x in v}) > 1 for v in identities.values()),
        "dropped": result["dropped"],
    }
    workdir_io.write_text(os.path.join(out, "identities.json"), json.dumps(report, indent=1))
    draw_identities(result, os.path.join(out, "identities.png"))
    return report


def draw_identities(result: dict, path: str, rows: int = 12, size=(128, 64)) -> None:
    """Each identity that joined more than one track (most tracks first, at most `rows`):
    the middle crop of each of its tracks, labelled camera/track and its frames."""
    from matplotlib.figure import Figure

    from input_pipeline.frames import prepare_frame

    tracks, labels, crops = result["tracks"], result["labels"], result["crops"]
    groups = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    shown = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    shown = shown[:rows] or sorted(groups.values(), key=lambda g: g[0])[:rows]
    cols = max(len(g) for g in shown)
    fig = Figure(figsize=(1.15 * cols + 0.8, 2.3 * len(shown)), dpi=100)
    axes = fig.subplots(len(shown), cols, squeeze=False)
    for r, group in enumerate(shown):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(group):
                ax.axis("off")
                continue
            t = tracks[group[c]]
            crop = crops[group[c]][len(crops[group[c]]) // 2]
            ax.imshow(prepare_frame(np.ascontiguousarray(crop), size))
            ax.set_title(f"{t.camera}/{t.track_id}\n{t.span[0]}-{t.span[1]}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"id {int(labels[group[0]]) + 1}", fontsize=9)
    fig.suptitle(f"{len(groups)} identities from {len(tracks)} tracks", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)


def define_flags() -> None:
    """The command's flags, defined only when it runs (`python -m reidjax.serving.tracks`), so that
    importing this module beside other commands' modules defines no flag twice."""
    flags.DEFINE_string("workdir", None, "A training run.", required=True)
    flags.DEFINE_multi_string("camera", [], "NAME=FRAME_FOLDER,MOT_TRACKS_FILE (repeat).")
    flags.DEFINE_string("threshold", "auto", "Distance, or auto, fpr_0.01, eer.")
    flags.DEFINE_integer("min_frames", 8, "Drop tracks with fewer boxes.")
    flags.DEFINE_float("min_height", 32, "Drop boxes lower than this (pixels).")
    flags.DEFINE_integer("max_frames", 32, "Boxes embedded per track, at most.")
    flags.DEFINE_string("checkpoint", "latest", "latest, best or a step.")
    flags.DEFINE_string("out", None, "Output folder (default WORKDIR/tracks).")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS

    def run() -> int:
        if not args.camera:
            raise UserError("give at least one --camera NAME=FRAME_FOLDER,MOT_TRACKS_FILE")
        cameras = [parse_camera(c) for c in args.camera]
        threshold = thresholds.run_threshold(args.workdir, args.threshold)
        embedder = Embedder.from_workdir(args.workdir, args.checkpoint, cli.overrides())
        print(f"{embedder.config.model.name} of {args.workdir} (step {embedder.step}); "
              f"threshold {threshold:.4g} ({args.threshold})", flush=True)  # fmt: skip
        result = associate(
            embedder, cameras, threshold, min_frames=args.min_frames,
            min_height=args.min_height, max_frames=args.max_frames,
        )  # fmt: skip
        out = args.out or os.path.join(args.workdir, "tracks")
        meta = {
            "workdir": args.workdir, "step": embedder.step, "threshold": threshold,
            "threshold_rule": args.threshold, "linkage": "average",
            "distance": embedder.config.eval.distance,
            "cameras": {n: {"frames": s, "tracks": t} for n, s, t in cameras},
        }  # fmt: skip
        report = write_outputs(out, result, meta)
        print(
            f"{len(result['tracks'])} tracks -> {report['num_identities']} identities, "
            f"{report['across_cameras']} seen by more than one camera; wrote {out}/"
            f"{{{','.join(n for n, _, _ in cameras)}}}.txt, identities.json, identities.png"
        )
        return 0

    return cli.run_or_explain(run)


def run() -> None:
    """The console command (`[project.scripts]` in pyproject.toml)."""
    define_flags()
    cli.console(main)


if __name__ == "__main__":
    run()
