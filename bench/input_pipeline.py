"""Input pipeline throughput: the grain train/eval pipelines vs a PyTorch DataLoader.

    python bench/input_pipeline.py                  # 256×128 synthetic frames
    python bench/input_pipeline.py --batches 40 --ids 80

Both sides read the same frames: reidjax from the ingested ArrayRecord shards, PyTorch
from the JPEG files they were ingested from (what the reference PyTorch code reads). The
train side does identity sampling (8 ids × 4 clips), stride-8 temporal sampling of 4
frames, JPEG decoding, clip-consistent flip and random erasing; reidjax emits uint8 (it
normalises on device), the PyTorch side emits normalised float tensors as the reference
code does. Eval: dense 4-frame clips of every query and gallery tracklet in batches of 32.
Frames/s counts decoded frames delivered in batches. The last line is JSON.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grain
import numpy as np

from input_pipeline.ingest import ingest
from input_pipeline.pipelines import TrainSpec, eval_dataset, train_dataset
from input_pipeline.records import ReIDDataset
from input_pipeline.sampling import (
    ERASE_FILL,
    IdentitySampler,
    dense_clips,
    random_erasing_box,
    temporal_indices,
)
from input_pipeline.synthetic import render_splits

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def time_sync(dataset, batches, frames_per_batch, warmup=2):
    """One batch after the other in this thread (grain's own iteration prefetches)."""
    for i in range(warmup):
        dataset[i]
    t0 = time.perf_counter()
    for i in range(warmup, warmup + batches):
        dataset[i]
    return batches * frames_per_batch / (time.perf_counter() - t0)


def time_iter(iterator, batches, frames_per_batch, warmup=2):
    it = iter(iterator)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    return batches * frames_per_batch / dt


def torch_side(data, paths_by_record, args, spec):
    import torch
    from PIL import Image

    index = data.splits["train"]
    sampler = IdentitySampler(index.pid, spec.ids_per_batch, spec.clips_per_id, spec.seed)
    mean, std = torch.from_numpy(MEAN).view(1, 3, 1, 1), torch.from_numpy(STD).view(1, 3, 1, 1)

    class TrainClips(torch.utils.data.Dataset):
        def __len__(self):
            return 10**9

        def __getitem__(self, item):
            step, position = divmod(item, spec.global_batch)
            t = sampler.batch(step)[position]
            rng = np.random.default_rng([spec.seed, 2, step, position])
            frames = temporal_indices(int(index.count[t]), spec.num_frames, "stride", rng)
            imgs = [
                torch.from_numpy(
                    np.asarray(Image.open(paths_by_record[index.first[t] + f]).convert("RGB"))
                )
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

    class EvalClipsDS(torch.utils.data.Dataset):
        def __init__(self, split):
            self.items = []
            idx = data.splits[split]
            for t, n in enumerate(idx.count):
                clips, _ = dense_clips(int(n), spec.num_frames)
                self.items += [(idx.first[t] + c) for c in clips]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, item):
            imgs = [
                torch.from_numpy(np.array(Image.open(paths_by_record[r]))) for r in self.items[item]
            ]
            return (torch.stack(imgs).permute(0, 3, 1, 2).float().div(255) - mean) / std

    results = {}
    for workers in args.workers:
        loader = torch.utils.data.DataLoader(
            TrainClips(), batch_size=spec.global_batch, num_workers=workers,
            persistent_workers=workers > 0,
        )  # fmt: skip
        results[f"train_workers{workers}"] = time_iter(
            loader, args.batches, spec.global_batch * spec.num_frames
        )
        ds = torch.utils.data.ConcatDataset([EvalClipsDS("gallery")] * 20)  # as .repeat()
        loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=workers)
        results[f"eval_workers{workers}"] = time_iter(loader, args.batches, 32 * spec.num_frames)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--ids", type=int, default=80)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    spec = TrainSpec(ids_per_batch=8, clips_per_id=4, num_frames=4, sampler="stride", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        splits = render_splits(os.path.join(tmp, "src"), num_ids=args.ids, size=(256, 128))
        ingest(splits, os.path.join(tmp, "rec"), (256, 128))
        data = ReIDDataset(os.path.join(tmp, "rec"))
        paths_by_record = {}
        for split in ("train", "query", "gallery"):
            index = data.splits[split]
            for i, tracklet in enumerate(getattr(splits, split)):
                for j, path in enumerate(tracklet.frames):
                    paths_by_record[int(index.first[i]) + j] = path
        result = {"bench": "input_pipeline", "frame_size": "256x128", "cpus": os.cpu_count()}
        frames = spec.global_batch * spec.num_frames
        # The gallery stream is repeated so that the timed window is far longer than the
        # prefetch buffer.
        ev = eval_dataset(data, "gallery", spec.num_frames, 32).repeat(None)
        ds = train_dataset(data, spec)
        for threads in args.workers:
            if threads == 0:
                train = time_sync(ds, args.batches, frames)
                evals = time_sync(ev, args.batches, 32 * spec.num_frames)
            else:
                options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4)
                train = time_iter(ds.to_iter_dataset(options), args.batches, frames)
                evals = time_iter(ev.to_iter_dataset(options), args.batches, 32 * spec.num_frames)
            result[f"reidjax_train_threads{threads}"] = train
            result[f"reidjax_eval_threads{threads}"] = evals
            print({k: round(v) for k, v in result.items() if "reidjax" in k}, flush=True)
        torch_results = torch_side(data, paths_by_record, args, spec)
        result.update({f"torch_{k}": v for k, v in torch_results.items()})

        def best(prefix):
            return max(v for k, v in result.items() if k.startswith(prefix))

        result["ratio_train_best"] = best("reidjax_train") / best("torch_train")
        result["ratio_eval_best"] = best("reidjax_eval") / best("torch_eval")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
