"""bfloat16 against float32 compute: final retrieval of the default run, and the loss of the
first steps of a full-size recipe on the same batches.

    python bench/dtype_compare.py --part default --seeds 0,1,2   # ~4 min per f32 run
    python bench/dtype_compare.py --part fullsize --steps 8      # strf_mars, 8 clips
    python bench/dtype_compare.py --part default --seeds 0 --tiny   # seconds (tests)

`default`: `python train.py --config configs/synthetic.py` (DSANet, tiny trunk, 300 steps on
the synthetic dataset) once per seed and compute dtype, each in its own workdir; prints R1
and mAP of every run and their mean and spread per dtype. The seed also draws the
synthetic dataset, so both dtypes of a seed see the same data, batches and initial weights.

`fullsize`: the train step of `configs/strf_mars.py` (full-size STRF-P3D-C, random
initial weights: no ImageNet file is read) on `--clips` clips of the synthetic dataset
built at 256×128, from one initial state, the same batches in both dtypes; prints the
total loss of every step in each dtype and their difference.

Parameters, optimizer state and BN statistics stay float32 in both dtypes; bfloat16 is the
compute dtype of convolutions and matmuls (`config.model.dtype`). The last line is JSON.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DTYPES = ("float32", "bfloat16")


def run_default(seed: int, dtype: str, root: str, tiny: bool) -> dict:
    """One default synthetic run; its final retrieval (results of the last evaluation)."""
    workdir = os.path.join(root, f"seed{seed}_{dtype}")
    command = [
        sys.executable, "train.py", "--config",
        "configs/synthetic.py:smoke" if tiny else "configs/synthetic.py",
        "--workdir", workdir, f"--config.seed={seed}", f"--config.model.dtype={dtype}",
        f"--config.dataset.data_dir={os.path.join(root, 'data')}",
    ]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    with open(os.path.join(workdir, "eval", "results.json")) as f:
        results = json.load(f)
    losses = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "loss/total" in row:
                losses.append(row["loss/total"])
    return {
        "seed": seed,
        "dtype": dtype,
        "R1": results["R1"],
        "mAP": results["mAP"],
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "wall_s": round(time.perf_counter() - start, 1),
    }


def part_default(seeds: list[int], tiny: bool, keep: str = "") -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="reidjax-dtype-") as scratch:
        root = keep or scratch
        for seed in seeds:
            for dtype in DTYPES:
                row = run_default(seed, dtype, root, tiny)
                print(
                    f"seed {seed} {dtype:>8}: R1 {row['R1']:.1f}  mAP {row['mAP']:.2f}  loss "
                    f"{row['first_loss']:.3f} -> {row['last_loss']:.3f}  ({row['wall_s']} s)",
                    flush=True,
                )
                rows.append(row)
    summary = {}
    for dtype in DTYPES:
        r1 = np.array([r["R1"] for r in rows if r["dtype"] == dtype])
        m = np.array([r["mAP"] for r in rows if r["dtype"] == dtype])
        summary[dtype] = {
            "R1_mean": float(r1.mean()), "R1_std": float(r1.std(ddof=1)) if len(r1) > 1 else 0.0,
            "mAP_mean": float(m.mean()), "mAP_std": float(m.std(ddof=1)) if len(m) > 1 else 0.0,
        }  # fmt: skip
        s = summary[dtype]
        print(
            f"{dtype:>8} over {len(r1)} seed(s): R1 {s['R1_mean']:.1f} ± {s['R1_std']:.1f}, "
            f"mAP {s['mAP_mean']:.2f} ± {s['mAP_std']:.2f} (mean ± sample std)"
        )
    return {"runs": rows, "summary": summary}


def part_fullsize(steps: int, clips: int, tiny: bool) -> dict:
    import jax

    from input_pipeline.batch import TRAIN_FIELDS
    from input_pipeline.pipelines import TrainBatches
    from reidjax import experiment
    from reidjax.config.config_lib import load_config
    from reidjax.data_setup import open_data
    from reidjax.runtime import sharding
    from reidjax.training import train_lib
    from reidjax.training.optim import build_optimizer
    from reidjax.training.state import create_state, init_variables

    curves = {}
    with tempfile.TemporaryDirectory(prefix="reidjax-dtype-") as root:
        for dtype in DTYPES:
            config = load_config("strf_mars", "smoke" if tiny else None)
            with config.unlocked():
                config.dataset.name = "synthetic"
                config.dataset.data_dir = os.path.join(root, "data")
                config.model.dtype = dtype
                config.mesh.data = 1
                config.init.imagenet = "none"
                config.train.ids_per_batch, config.train.clips_per_id = clips // 4, 4
            data, meta = open_data(config)
            batches = TrainBatches(data, experiment.train_spec(config))
            tx, schedule = build_optimizer(
                experiment.optim_spec(config), batches.steps_per_epoch, 250
            )
            model = experiment.build(config, meta)
            mesh = sharding.make_mesh(config)
            state = create_state(init_variables(model, config), tx, mesh)
            step = jax.jit(train_lib.make_train_step(model, tx, schedule), donate_argnums=0)
            key, losses = jax.random.key(1), []
            t0 = time.perf_counter()
            for i in range(steps):
                batch = batches(i)
                state, metrics = step(state, {k: batch[k] for k in TRAIN_FIELDS}, key)
                losses.append(float(metrics["loss/total"]))
                print(f"{dtype:>8} step {i}: loss {losses[-1]:.5f}", flush=True)
            curves[dtype] = {"loss": losses, "wall_s": round(time.perf_counter() - t0, 1)}
    a, b = (np.array(curves[d]["loss"]) for d in DTYPES)
    rel = np.abs(b - a) / np.abs(a)
    print("step  float32   bfloat16  |diff|/f32")
    for i in range(steps):
        print(f"{i:>4}  {a[i]:.5f}  {b[i]:.5f}  {rel[i]:.2e}")
    return {"curves": curves, "max_rel_diff": float(rel.max())}


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("default", "fullsize"), default="default")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--clips", type=int, default=8, help="fullsize: clips per step (K=4)")
    parser.add_argument("--tiny", action="store_true", help="smoke configs: seconds (tests)")
    parser.add_argument("--keep", default="", help="default: keep the workdirs in this folder")
    args = parser.parse_args()
    from common import header

    if args.part == "default":
        result = part_default([int(s) for s in args.seeds.split(",")], args.tiny, args.keep)
    else:
        result = part_fullsize(args.steps, args.clips, args.tiny)
    print(json.dumps({**header("dtype_compare", part=args.part, tiny=args.tiny), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
