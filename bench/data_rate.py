"""Input pipeline throughput against the single-core JPEG decode limit and PyTorch.

    python bench/data_rate.py                  # 256×128 synthetic frames
    python bench/data_rate.py --batches 40 --ids 80
    python bench/data_rate.py --tiny           # 8 ids at 32×64, one round: tests

All sides read the same JPEG bytes: the synthetic dataset built at 256×128 by its
tensorflow-datasets builder. reidjax reads them through `tfds.data_source` (one record
per frame), decodes with libjpeg-turbo (simplejpeg) into the batch array and augments in
place; the PyTorch baseline reads the same bytes from JPEG files through a `DataLoader`,
as the lineage code does (PIL decode, float conversion, ImageNet normalisation, flip,
erasing). Training batches: 8 ids × 4 clips × 4 frames (stride-8 sampling, flip, random
erasing); evaluation: 32 dense 4-frame clips. Frames/s counts decoded frames delivered in
batches, after warm-up batches (worker start-up excluded).

The limit: simplejpeg decoding the same records, preloaded in memory, into one buffer, in
this process on one core; and the same in two processes at once (both cores busy: what
two cores deliver together, with the clock and memory effects of a loaded machine). The
limit of as many cores as workers is measured just before each pipeline measurement
(this machine's speed drifts by ±15% within minutes), and every setting runs in
`--rounds` rounds; the figures are medians. The last line is JSON.
"""

import json
import os
import tempfile
import time

import numpy as np
import simplejpeg
from absl import app, flags
from common import frame_size

from input_pipeline.build import build_dataset
from input_pipeline.pipelines import TrainSpec, eval_dataset, iterate, train_dataset
from input_pipeline.records import ReIDDataset
from input_pipeline.sampling import (
    ERASE_FILL,
    TrackletChunkSampler,
    dense_clips,
    random_erasing_box,
    temporal_indices,
)
from reidjax import cli

_BATCHES = flags.DEFINE_integer("batches", 30, "Timed batches per stream and round.")
_IDS = flags.DEFINE_integer("ids", 80, "Synthetic identities to build.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds (the figures are medians).")
_DATASET = flags.DEFINE_string("dataset", "", "A prepared dataset instead of the synthetic.")
_BUILDER_CONFIG = flags.DEFINE_string("builder_config", "256x128", "Its builder config.")
_DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "Its data dir.")
_SKIP_TORCH = flags.DEFINE_bool("skip_torch", False, "Leave out the PyTorch DataLoader side.")
_TINY = flags.DEFINE_bool("tiny", False, "8 ids at 32x64, 2 batches, 1 round (tests).")

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def decode_limit(data, frames: int = 3000, pil: bool = True):
    """Frames/s of simplejpeg and of PIL decoding stored records, one core, bytes in memory."""
    from io import BytesIO

    from PIL import Image

    n = min(frames, data.num_frames)
    blobs = [data.encoded(i) for i in range(n)]
    h, w = data.size
    out = np.empty((h, w, 3), np.uint8)
    t0 = time.perf_counter()
    for b in blobs:
        simplejpeg.decode_jpeg(b, buffer=out)
    turbo = n / (time.perf_counter() - t0)
    if not pil:
        return turbo
    t0 = time.perf_counter()
    for b in blobs[: n // 3]:
        np.asarray(Image.open(BytesIO(b)))
    return turbo, (n // 3) / (time.perf_counter() - t0)


def _decode_for(args) -> tuple[float, float, int]:
    blobs, shape, seconds = args
    out = np.empty(shape, np.uint8)
    for b in blobs[:50]:  # warm up
        simplejpeg.decode_jpeg(b, buffer=out)
    start, n = time.time(), 0
    while time.time() - start < seconds:
        for b in blobs:
            simplejpeg.decode_jpeg(b, buffer=out)
        n += len(blobs)
    return start, time.time(), n


def parallel_decode_limit(data, processes: int, frames: int = 1500, seconds: float = 2.0):
    """Frames/s of `processes` processes decoding at once (every core busy: what the
    cores deliver together, clock and memory effects included)."""
    import multiprocessing

    blobs = [data.encoded(i) for i in range(min(frames, data.num_frames))]
    h, w = data.size
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        runs = pool.map(_decode_for, [(blobs, (h, w, 3), seconds)] * processes)
    return sum(n for _, _, n in runs) / (max(e for _, e, _ in runs) - min(s for s, _, _ in runs))


def time_stream(stream, batches: int, frames_per_batch: int, warmup: int = 3) -> float:
    it = iter(stream)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * frames_per_batch / (time.perf_counter() - t0)
    if hasattr(it, "close"):
        it.close()
    return rate


def torch_side(data, folder, args, spec):
    """The PyTorch DataLoader baseline over JPEG files holding the same bytes."""
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    index = data.splits["train"]
    sampler = TrackletChunkSampler(index.pid, spec.ids_per_batch, spec.clips_per_id, spec.seed)
    mean, std = torch.from_numpy(MEAN).view(1, 3, 1, 1), torch.from_numpy(STD).view(1, 3, 1, 1)

    def path(record):
        return os.path.join(folder, f"{record:07d}.jpg")

    class TrainClips(torch.utils.data.Dataset):
        def __len__(self):
            return 10**9

        def __getitem__(self, item):
            step, position = divmod(item, spec.global_batch)
            t = sampler.batch(step)[position]
            rng = np.random.default_rng([spec.seed, 2, step, position])
            frames = temporal_indices(int(index.count[t]), spec.num_frames, "stride", rng)
            imgs = [
                torch.from_numpy(np.asarray(Image.open(path(index.first[t] + f)).convert("RGB")))
                for f in frames
            ]
            clip = torch.stack(imgs).permute(0, 3, 1, 2).float().div(255)
            if rng.random() < 0.5:
                clip = clip.flip(-1)
            clip = (clip - mean) / std
            if rng.random() < 0.5:
                box = random_erasing_box(clip.shape[2], clip.shape[3], rng)
                if box is not None:
                    top, left, h, w = box
                    fill = torch.from_numpy(((ERASE_FILL / 255 - MEAN) / STD).astype(np.float32))
                    clip[:, :, top : top + h, left : left + w] = fill.view(1, 3, 1, 1)
            return clip, int(index.pid[t])

    class EvalClips(torch.utils.data.Dataset):
        def __init__(self, split):
            self.items = []
            idx = data.splits[split]
            for t, n in enumerate(idx.count):
                clips, _ = dense_clips(int(n), spec.num_frames)
                self.items += [(idx.first[t] + c) for c in clips]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, item):
            imgs = [torch.from_numpy(np.array(Image.open(path(r)))) for r in self.items[item]]
            return (torch.stack(imgs).permute(0, 3, 1, 2).float().div(255) - mean) / std

    results = {}
    for workers in (0, 1, 2):
        loader = torch.utils.data.DataLoader(
            TrainClips(), batch_size=spec.global_batch, num_workers=workers,
            persistent_workers=workers > 0,
        )  # fmt: skip
        frames = spec.global_batch * spec.num_frames
        results[f"train_workers{workers}"] = time_stream(loader, args.batches, frames)
        ds = torch.utils.data.ConcatDataset([EvalClips("gallery")] * 50)
        loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=workers)
        results[f"eval_workers{workers}"] = time_stream(loader, args.batches, 32 * spec.num_frames)
        print({k: round(v) for k, v in results.items()}, flush=True)
    return results


def main(argv):
    del argv
    args = flags.FLAGS
    if args.tiny:
        args.ids, args.batches, args.rounds = 8, 2, 1
    ids_per_batch = 2 if args.tiny else 8
    spec = TrainSpec(
        ids_per_batch=ids_per_batch, clips_per_id=4, num_frames=4, sampler="stride", seed=0
    )
    frames = spec.global_batch * spec.num_frames
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset:
            data = ReIDDataset(args.dataset, args.builder_config, args.data_dir)
        else:
            h, w = frame_size(args.tiny)
            name = f"ids{args.ids}_cams4_seed0_{h}x{w}"
            data = build_dataset("synthetic", name, tmp, quiet=True)
        h, w = data.size
        result = {
            "bench": "data_rate", "frame_size": f"{h}x{w}", "cpus": os.cpu_count(),
            "frames_stored": data.num_frames,
        }  # fmt: skip
        _, pil = decode_limit(data)
        evals = eval_dataset(data, "gallery", spec.num_frames, 32).repeat(None)
        train = train_dataset(data, spec)
        runs = [("inline", 0), ("threads", 1), ("threads", 2), ("processes", 1), ("processes", 2)]
        rounds = {}
        for r in range(args.rounds):
            for kind, workers in runs:
                name = f"{kind}{workers}" if workers else kind
                # The limit of as many cores as workers, measured just before: this
                # machine's speed drifts by ±15% within minutes.
                limit = (
                    decode_limit(data, pil=False)
                    if workers <= 1
                    else parallel_decode_limit(data, workers)
                )
                kind_ = kind if workers else "threads"
                rates = {
                    "train": time_stream(iterate(train, workers, kind_), args.batches, frames),
                    "eval": time_stream(
                        iterate(evals, workers, kind_), args.batches, 32 * spec.num_frames
                    ),
                }
                for stream, rate in rates.items():
                    rounds.setdefault(f"{stream}_{name}", []).append(rate)
                    rounds.setdefault(f"{stream}_{name}_vs_limit", []).append(rate / limit)
                rounds.setdefault(f"limit_{max(workers, 1)}core", []).append(limit)
                print(f"round {r}: {name}: limit {limit:,.0f}, train {rates['train']:,.0f} "
                      f"({rates['train'] / limit:.2f}), eval {rates['eval']:,.0f} "
                      f"({rates['eval'] / limit:.2f}) frames/s", flush=True)  # fmt: skip
        result.update({k: float(np.median(v)) for k, v in rounds.items()})
        result["rounds"] = rounds
        result["pil_decode"] = pil
        for stream in ("train", "eval"):
            for kind in ("threads", "processes"):
                result[f"{stream}_{kind}_scaling"] = float(
                    np.median(np.divide(rounds[f"{stream}_{kind}2"], rounds[f"{stream}_{kind}1"]))
                )
        if not args.skip_torch:
            folder = os.path.join(tmp, "files")
            os.makedirs(folder)
            for i in range(data.num_frames):
                with open(os.path.join(folder, f"{i:07d}.jpg"), "wb") as f:
                    f.write(data.encoded(i))
            result.update(
                {f"torch_{k}": v for k, v in torch_side(data, folder, args, spec).items()}
            )
    m = result
    print(
        f"medians of {args.rounds} rounds: limit {m['limit_1core']:,.0f} frames/s on 1 core, "
        f"{m['limit_2core']:,.0f} on 2 at once; train vs limit: inline "
        f"{m['train_inline_vs_limit']:.2f}, threads1 {m['train_threads1_vs_limit']:.2f}, "
        f"threads2 {m['train_threads2_vs_limit']:.2f}, processes1 "
        f"{m['train_processes1_vs_limit']:.2f}, processes2 {m['train_processes2_vs_limit']:.2f};"
        f" scaling 1->2: threads {m['train_threads_scaling']:.2f}x, processes "
        f"{m['train_processes_scaling']:.2f}x"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
