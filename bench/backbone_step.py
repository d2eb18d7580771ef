"""Forward+backward throughput of the full-size P3D-C re-ID network: JAX vs PyTorch eager.

    python bench/backbone_step.py                      # B=4 clips × 4 frames × 256×128
    python bench/backbone_step.py --batch 8 --steps 5 --variant i3d
    python bench/backbone_step.py --tiny               # tiny trunk, 32×64: seconds (tests)

Each side runs the same network (P3D-C ResNet-50, last stride 1, max/mean pooling head,
BN1d, 625-way classifier) in training mode (batch-statistics BN) and computes the gradient
of the cross-entropy with respect to every parameter; no optimizer update. JAX is measured
jit-compiled in float32 and bfloat16 compute (float32 parameters), and in float32 with
XLA's native strided convolutions instead of the polyphase ones used on CPU
(`jax_f32_native`, see reidjax/models/conv.py); PyTorch in eager float32 (optionally in
channels-last-3d memory format). Throughput is clips/s over `--steps` timed
steps after `--warmup` untimed ones (which include compilation, reported separately).
The last line is JSON with every figure and the JAX/PyTorch ratios.
"""

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from common import frame_size, time_eager

from reidjax import cli
from reidjax.models import VideoReIDNet

_BATCH = flags.DEFINE_integer("batch", 4, "Clips per step.")
_FRAMES = flags.DEFINE_integer("frames", 4, "Frames per clip (T).")
_VARIANT = flags.DEFINE_string("variant", "p3dc", "Backbone variant.")
_CLASSES = flags.DEFINE_integer("classes", 625, "Classifier width.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps first.")
_ONLY = flags.DEFINE_list(
    "only",
    ["jax_f32", "jax_bf16", "jax_f32_native", "torch"],
    "Sides to run (jax_f32_native: XLA's own strided convs).",
)
_CHANNELS_LAST = flags.DEFINE_bool("torch_channels_last", False, "PyTorch channels-last-3d.")
_TINY = flags.DEFINE_bool("tiny", False, "Tiny trunk on 32x64 frames (tests).")


def jax_step_fn(model):
    def loss_fn(params, batch_stats, clips, labels):
        out, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            clips,
            train=True,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels).mean()
        return loss, updates["batch_stats"]

    @jax.jit
    def step(params, batch_stats, clips, labels):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, clips, labels
        )
        return loss, grads, batch_stats

    return step


def bench_jax(args, dtype, strided_impl="auto"):
    model = VideoReIDNet(
        num_classes=args.classes,
        arch="tiny" if args.tiny else "resnet50",
        variant=args.variant,
        dtype=dtype,
        strided_impl=strided_impl,
    )
    rng = np.random.default_rng(0)
    h, w = frame_size(args.tiny)
    clips = jnp.asarray(rng.normal(size=(args.batch, args.frames, h, w, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, args.classes, args.batch))
    variables = jax.jit(model.init)(jax.random.key(0), clips)
    step = jax_step_fn(model)
    t0 = time.perf_counter()
    compiled = step.lower(variables["params"], variables["batch_stats"], clips, labels).compile()
    compile_s = time.perf_counter() - t0
    flops = compiled.cost_analysis()
    flops = (flops[0] if isinstance(flops, list | tuple) else flops).get("flops", float("nan"))
    stats = variables["batch_stats"]
    for _ in range(args.warmup):
        loss, grads, stats = compiled(variables["params"], stats, clips, labels)
        jax.block_until_ready(grads)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss, grads, stats = compiled(variables["params"], stats, clips, labels)
    jax.block_until_ready((loss, grads))
    dt = (time.perf_counter() - t0) / args.steps
    return {
        "clips_per_s": args.batch / dt,
        "step_s": dt,
        "compile_s": compile_s,
        "xla_gflops_per_step": flops / 1e9,
        "loss": float(loss),
    }


def bench_torch(args, channels_last):
    import torch
    from torch import nn
    from torch_resnet import TorchResNet

    torch.manual_seed(0)
    trunk = TorchResNet(dims=3, variant=args.variant, last_stride=1, num_classes=0)
    bn = nn.BatchNorm1d(2048)
    fc = nn.Linear(2048, args.classes)
    model = nn.ModuleList([trunk, bn, fc]).train()
    rng = np.random.default_rng(0)
    h, w = frame_size(args.tiny)
    clips = torch.from_numpy(rng.normal(size=(args.batch, 3, args.frames, h, w)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, args.classes, args.batch))
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        clips = clips.contiguous(memory_format=torch.channels_last_3d)

    def step():
        model.zero_grad(set_to_none=True)
        fmap = trunk(clips)  # [B, C, T, H, W]
        feat = fmap.amax(dim=(3, 4)).mean(dim=2)
        loss = nn.functional.cross_entropy(fc(bn(feat)), labels)
        loss.backward()
        return loss.detach()

    dt, loss = time_eager(step, args.warmup, args.steps)
    return {
        "clips_per_s": args.batch / dt,
        "step_s": dt,
        "threads": torch.get_num_threads(),
        "loss": float(loss),
        "torch": torch.__version__,
    }


def main(argv):
    del argv
    args = flags.FLAGS
    only = set(args.only)
    result = {
        "bench": "backbone_step",
        "variant": args.variant,
        "batch": args.batch,
        "frames": args.frames,
        "size": "{}x{}".format(*frame_size(args.tiny)),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    sides = (
        ("jax_f32", jnp.float32, "auto"),
        ("jax_bf16", jnp.bfloat16, "auto"),
        ("jax_f32_native", jnp.float32, "native"),
    )
    for name, dtype, impl in sides:
        if name in only:
            result[name] = bench_jax(args, dtype, impl)
            print(f"{name}: {result[name]['clips_per_s']:.3f} clips/s", flush=True)
    if "torch" in only:
        result["torch_eager"] = bench_torch(args, args.torch_channels_last)
        print(f"torch_eager: {result['torch_eager']['clips_per_s']:.3f} clips/s", flush=True)
        for name, _, _ in sides:
            if name in result:
                result[f"ratio_{name}_vs_torch"] = (
                    result[name]["clips_per_s"] / result["torch_eager"]["clips_per_s"]
                )
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
