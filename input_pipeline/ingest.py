"""Ingest a dataset once into ArrayRecord shards: one record per frame.

    python -m input_pipeline.ingest --dataset mars --root /data/MARS --out /data/mars_rec
    python -m input_pipeline.ingest --dataset ilidsvid --root /data/iLIDS-VID \
        --out /data/ilids_rec_split3 --split-id 3 --size 256x128

Output folder:

    frames-NNNNN.array_record            one record per frame: encoded image bytes
                                         (ArrayRecord `group_size:1`, random access)
    tracklets.npz                        per tracklet: split (0 train, 1 query, 2 gallery),
                                         pid, camid, first record, frame count
    manifest.json                        format version, dataset, size, counts per split,
                                         shards, skipped frames

Every image is decoded once to validate it. A frame already at the target size and in JPEG
is stored byte for byte (no generation loss); others are resized (bicubic, as the lineage) and
re-encoded: JPEG quality 95, or PNG with `--lossless`. A corrupt or unreadable image stops
the ingest with its path, or with `--skip-bad` is dropped and listed in the manifest.
The output is written to `<out>.partial` and renamed at the end: an interrupted ingest
leaves no half dataset, and running it again restarts cleanly.

The records are written with ArrayRecord directly. The tensorflow-datasets builder API was
not used: reidjax has no TensorFlow dependency, and grain reads ArrayRecord natively.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

from input_pipeline.datasets import add_parser_arguments, load_dataset, parser_options
from input_pipeline.datasets.tracklets import DatasetError, Splits
from input_pipeline.records import FORMAT_VERSION, INDEX, MANIFEST, SPLITS


def encode_frame(path: str, size: tuple[int, int], lossless: bool) -> tuple[bytes | None, str]:
    """Validates and encodes one frame; returns (bytes, "") or (None, reason)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        image = Image.open(io.BytesIO(data))
        image.load()
        fmt = image.format
        image = image.convert("RGB")
    except Exception as e:  # PIL raises many types for truncated or corrupt files
        return None, f"{type(e).__name__}: {e}"
    height, width = size
    if image.size == (width, height) and fmt == "JPEG" and not lossless:
        return data, ""
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    if lossless:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=95)
    return out.getvalue(), ""


def _encode_job(args):
    return encode_frame(*args)


class Progress:
    """A one-line progress report on stderr: done/total, items/s and ETA."""

    def __init__(self, total: int, what: str, every: float = 1.0, stream=sys.stderr):
        self.total, self.what, self.every, self.stream = total, what, every, stream
        self.start = self.last = time.perf_counter()
        self.done = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            self.stream.write(
                f"\r{self.what}: {self.done:,}/{self.total:,} ({rate:,.0f}/s, ETA {eta:,.0f}s)"
            )
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


def ingest(
    splits: Splits,
    out: str,
    size: tuple[int, int] = (256, 128),
    *,
    lossless: bool = False,
    skip_bad: bool = False,
    workers: int | None = None,
    frames_per_shard: int = 100_000,
    overwrite: bool = False,
    dataset: str = "",
) -> dict:
    """Writes `splits` to `out` as ArrayRecord shards + index + manifest; returns the manifest.

    Raises:
        DatasetError: a corrupt image (without `skip_bad`), or `out` already holding an
            ingested dataset (without `overwrite`).
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    if os.path.exists(os.path.join(out, MANIFEST)) and not overwrite:
        raise DatasetError(f"{out} already holds an ingested dataset (use --overwrite)")
    partial = out.rstrip("/") + ".partial"
    if os.path.exists(partial):  # an interrupted earlier run: start again
        shutil.rmtree(partial)
    os.makedirs(partial)
    # A tracklet listed in several splits (MARS queries are also gallery tracklets) is
    # stored once; the later ones reuse its records.
    owner: dict[tuple[str, ...], tuple[str, int]] = {}
    jobs = []
    for split_id, split in enumerate(SPLITS):
        for t_id, tracklet in enumerate(getattr(splits, split)):
            if tracklet.frames in owner:
                continue
            owner[tracklet.frames] = (split, t_id)
            jobs += [(split_id, t_id, path) for path in tracklet.frames]
    num_shards = max(1, -(-len(jobs) // frames_per_shard))
    shard_names = [f"frames-{i:05d}.array_record" for i in range(num_shards)]
    counts = {s: [0] * len(getattr(splits, s)) for s in SPLITS}
    first = {s: [-1] * len(getattr(splits, s)) for s in SPLITS}
    skipped = []
    record = 0
    writer = None
    progress = Progress(len(jobs), f"ingest {splits.name}")
    workers = workers or os.cpu_count() or 1
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        args = ((path, size, lossless) for _, _, path in jobs)
        results = pool.imap(_encode_job, args, chunksize=32) if pool else map(_encode_job, args)
        for (split_id, t_id, path), (data, error) in zip(jobs, results, strict=True):
            progress.update()
            if data is None:
                if not skip_bad:
                    raise DatasetError(f"corrupt or unreadable image {path}: {error}")
                skipped.append({"path": path, "error": error})
                continue
            if record % frames_per_shard == 0:
                if writer is not None:
                    writer.close()
                shard = os.path.join(partial, shard_names[record // frames_per_shard])
                writer = ArrayRecordWriter(shard, "group_size:1")
            writer.write(data)
            split = SPLITS[split_id]
            if counts[split][t_id] == 0:
                first[split][t_id] = record
            counts[split][t_id] += 1
            record += 1
    finally:
        if writer is not None:
            writer.close()
        if pool is not None:
            pool.terminate()
    shard_names = shard_names[: max(1, -(-record // frames_per_shard))]
    index = {"split": [], "pid": [], "camid": [], "first": [], "count": []}
    manifest_splits = {}
    dropped = []
    for split in SPLITS:  # copies point at their first occurrence's records
        for t_id, tracklet in enumerate(getattr(splits, split)):
            src_split, src_id = owner[tracklet.frames]
            first[split][t_id] = first[src_split][src_id]
            counts[split][t_id] = counts[src_split][src_id]
    for split_id, split in enumerate(SPLITS):
        kept = 0
        for t_id, tracklet in enumerate(getattr(splits, split)):
            if counts[split][t_id] == 0:
                dropped.append({"split": split, "first_frame": tracklet.frames[0]})
                continue
            index["split"].append(split_id)
            index["pid"].append(tracklet.pid)
            index["camid"].append(tracklet.camid)
            index["first"].append(first[split][t_id])
            index["count"].append(counts[split][t_id])
            kept += 1
        ids = {t.pid for t, c in zip(getattr(splits, split), counts[split], strict=True) if c}
        manifest_splits[split] = {
            "ids": len(ids),
            "tracklets": kept,
            "frames": int(sum(counts[split])),
        }
    np.savez(os.path.join(partial, INDEX), **{k: np.asarray(v, np.int64) for k, v in index.items()})
    manifest = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset or splits.name,
        "name": splits.name,
        "size": list(size),
        "encoding": "png" if lossless else "jpeg",
        "splits": manifest_splits,
        "shards": shard_names,
        "records": record,
        "skipped_frames": skipped,
        "dropped_tracklets": dropped,
    }
    with open(os.path.join(partial, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(partial, out)
    return manifest


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must be HxW (e.g. 256x128), got {text!r}") from e
    return h, w


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_parser_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=parse_size, default=(256, 128), help="HxW")
    parser.add_argument("--lossless", action="store_true", help="store resized frames as PNG")
    parser.add_argument("--skip-bad", action="store_true", help="drop unreadable images")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        splits = load_dataset(args.dataset, args.root, **parser_options(args))
        print(splits.summary())
        manifest = ingest(
            splits,
            args.out,
            args.size,
            lossless=args.lossless,
            skip_bad=args.skip_bad,
            workers=args.workers or None,
            overwrite=args.overwrite,
            dataset=args.dataset,
        )
    except DatasetError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {manifest['records']:,} frames to {args.out} "
        f"({len(manifest['skipped_frames'])} skipped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
