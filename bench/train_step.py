"""Train-step throughput of the full-size STRF-P3D-C and DSANet models: JAX vs PyTorch eager.

    python bench/train_step.py                          # 4 clips (2 ids × 2) × 4 × 256×128
    python bench/train_step.py --models dsanet --batch 8 --steps 5
    python bench/train_step.py --tiny                   # the smoke configs: seconds (tests)
    python bench/train_step.py --models strf --only jax_f32 --remat convs

JAX runs the real train step of `reidjax.training.train_lib` (configs/strf_mars.py and
configs/dsanet_mars.py at full size): forward, every loss term of the model's objective,
backward and the coupled-L2 Adam update, jit-compiled, in float32 and bfloat16 compute.
Compile time and XLA's FLOP count per step are reported; with an accelerator, also the
model FLOP utilisation (`--peak_tflops`).

The PyTorch side (eager float32) runs the same ResNet-50 trunk (P3D-C for STRF, C2D for
DSANet, last stride 1), the BNNeck head, CE + batch-hard triplet and the same Adam
update, but **not** the STRF units or the DSANet heads (CEL, TLM, FWG, SAO) and their
losses, which this project implements in JAX only. It is therefore a lower bound on the
PyTorch cost of the same model, and the JAX/PyTorch ratio is conservative. The last line
is JSON.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from common import header, time_eager

from input_pipeline.batch import TRAIN_FIELDS
from reidjax import experiment
from reidjax.config.config_lib import load_config
from reidjax.data_setup import registry_meta
from reidjax.runtime import sharding
from reidjax.training import train_lib
from reidjax.training.optim import build_optimizer
from reidjax.training.state import create_state, init_variables

CONFIGS = {"strf": ("strf_mars", "p3dc"), "dsanet": ("dsanet_mars", "c2d")}


def batch_arrays(args, size, classes, cameras):
    """A training batch (`input_pipeline.batch.TrainBatch`) of random clips, 2 per identity,
    with the flip / erasing each clip gets in the train step."""
    rng = np.random.default_rng(0)
    ids, (h, w) = args.batch // 2, size
    batch = {
        "clips": rng.integers(0, 256, (args.batch, args.frames, h, w, 3), dtype=np.uint8),
        "flip": rng.random(args.batch) < 0.5,
        "erase": np.tile(np.array([[h // 4, w // 4, h // 2, w // 2]], np.int32), (args.batch, 1)),
        "labels": np.repeat(rng.choice(classes, ids, replace=False), 2).astype(np.int32),
        "cameras": rng.integers(0, cameras, args.batch).astype(np.int32),
    }
    assert tuple(batch) == TRAIN_FIELDS
    return batch


def size_of(args) -> tuple[int, int]:
    return (32, 64) if args.tiny else (256, 128)


def bench_jax(args, name, dtype):
    config = load_config(CONFIGS[name][0], "smoke" if args.tiny else None)
    with config.unlocked():
        config.input.num_frames = args.frames
        config.model.dtype = dtype
        config.model.remat = args.remat
        config.model.num_classes = 625
        config.dataset.num_cameras = 6
        config.mesh.data = 1
        config.train.ids_per_batch, config.train.clips_per_id = args.batch // 2, 2
        config.init.imagenet = "none"  # random weights time the same
    tx, schedule = build_optimizer(experiment.optim_spec(config), 100, config.train.epochs)
    model = experiment.build(config, registry_meta(config))
    mesh = sharding.make_mesh(config)
    state = create_state(init_variables(model, config), tx, mesh)
    batch = batch_arrays(args, size_of(args), 625, 6)
    key = jax.random.key(1)
    step = jax.jit(train_lib.make_train_step(model, tx, schedule), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    flops = (cost[0] if isinstance(cost, list | tuple) else cost).get("flops", float("nan"))
    for _ in range(args.warmup):
        state, metrics = compiled(state, batch, key)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = compiled(state, {k: jnp.asarray(v) for k, v in batch.items()}, key)
    jax.block_until_ready(state)
    dt = (time.perf_counter() - t0) / args.steps
    out = {
        "clips_per_s": args.batch / dt,
        "step_s": dt,
        "compile_s": compile_s,
        "xla_gflops_per_step": flops / 1e9,
        "loss": float(metrics["loss/total"]),
    }
    if args.peak_tflops:
        out["mfu"] = flops / dt / (args.peak_tflops * 1e12)
    return out


def bench_torch(args, name):
    import torch
    from torch import nn
    from torch_resnet import TorchResNet

    torch.manual_seed(0)
    trunk = TorchResNet(dims=3, variant=CONFIGS[name][1], last_stride=1, num_classes=0)
    torch.set_num_threads(1 if args.tiny else torch.get_num_threads())
    bn = nn.BatchNorm1d(2048)
    fc = nn.Linear(2048, 625, bias=False)
    model = nn.ModuleList([trunk, bn, fc]).train()
    opt = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4)
    batch = batch_arrays(args, size_of(args), 625, 6)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1) * 255
    labels = torch.from_numpy(batch["labels"]).long()

    def triplet(feat, margin=0.3):
        f = nn.functional.normalize(feat, dim=1)
        dist = 1 - f @ f.t()
        same = labels[:, None] == labels[None, :]
        hardest_pos = (dist * same).amax(1)
        hardest_neg = (dist + 1e4 * same).amin(1)
        return nn.functional.relu(hardest_pos - hardest_neg + margin).mean()

    def step():
        opt.zero_grad(set_to_none=True)
        x = torch.from_numpy(batch["clips"]).permute(0, 4, 1, 2, 3).float()
        feat = trunk((x - mean) / std).amax(dim=(3, 4)).mean(dim=2)
        bn_feat = bn(feat)
        loss = nn.functional.cross_entropy(fc(bn_feat), labels) + triplet(bn_feat)
        loss.backward()
        opt.step()
        return loss.detach()

    dt, loss = time_eager(step, args.warmup, args.steps)
    return {"clips_per_s": args.batch / dt, "step_s": dt, "loss": float(loss),
            "threads": torch.get_num_threads(), "torch": torch.__version__}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="strf,dsanet")
    parser.add_argument("--batch", type=int, default=4, help="clips per step (2 per id)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", default="jax_f32,jax_bf16,torch")
    parser.add_argument("--peak_tflops", type=float, default=0.0, help="for the MFU")
    parser.add_argument("--tiny", action="store_true", help="smoke configs, 32x64 frames")
    parser.add_argument("--remat", default="auto", help="config.model.remat of the JAX side")
    args = parser.parse_args(argv)
    if args.batch % 2:
        parser.error("--batch must be even (2 clips per identity)")
    only = set(args.only.split(","))
    h, w = size_of(args)
    result = header(
        "train_step", batch=args.batch, frames=args.frames, size=f"{h}x{w}", remat=args.remat
    )
    for name in args.models.split(","):
        row = {}
        for side, dtype in (("jax_f32", "float32"), ("jax_bf16", "bfloat16")):
            if side in only:
                row[side] = bench_jax(args, name, dtype)
                print(
                    f"{name} {side}: {row[side]['clips_per_s']:.3f} clips/s "
                    f"(compile {row[side]['compile_s']:.0f} s)",
                    flush=True,
                )
        if "torch" in only:
            row["torch_eager"] = bench_torch(args, name)
            print(f"{name} torch_eager: {row['torch_eager']['clips_per_s']:.3f} clips/s")
            for side in ("jax_f32", "jax_bf16"):
                if side in row:
                    row[f"ratio_{side}_vs_torch"] = (
                        row[side]["clips_per_s"] / row["torch_eager"]["clips_per_s"]
                    )
        result[name] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
