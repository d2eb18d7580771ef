"""Evaluation throughput (frames/s) of the full-size network: JAX vs PyTorch eager.

    python bench/eval_rate.py                       # P3D-C baseline, 8 clips × 4 × 256×128
    python bench/eval_rate.py --variant c2d --batch 16 --steps 5
    python bench/eval_rate.py --tiny                # tiny trunk, 32×64: seconds (tests)

Both sides run the inference the evaluator runs on each batch of dense test clips: the
full-size ResNet-50 network (last stride 1, spatial max, temporal mean, BN1d in inference
mode) on uint8 clips normalised on the device, returning the post-BN test feature. JAX is
measured as the jitted step of `reidjax.evaluation.features` (the per-tracklet accumulation
included) in float32 and bfloat16 compute; PyTorch in eager float32 under
`torch.inference_mode()`. Frames/s = clips × T / step time over `--steps` timed steps
after `--warmup` untimed ones (compilation reported separately). The last line is JSON.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from common import frame_size, header, time_eager

from reidjax import cli
from reidjax.evaluation.features import accumulate
from reidjax.models import VideoReIDNet
from reidjax.models.factory import normalize

_BATCH = flags.DEFINE_integer("batch", 8, "Clips per batch.")
_FRAMES = flags.DEFINE_integer("frames", 4, "Frames per clip (T).")
_VARIANT = flags.DEFINE_string("variant", "p3dc", "Backbone variant.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps first.")
_ONLY = flags.DEFINE_list("only", ["jax_f32", "jax_bf16", "torch"], "Sides to run.")
_TINY = flags.DEFINE_bool("tiny", False, "Tiny trunk on 32x64 frames (tests).")


def bench_jax(args, dtype):
    arch = "tiny" if args.tiny else "resnet50"
    model = VideoReIDNet(num_classes=625, arch=arch, variant=args.variant, dtype=dtype)
    rng = np.random.default_rng(0)
    h, w = frame_size(args.tiny)
    clips = rng.integers(0, 256, (args.batch, args.frames, h, w, 3), dtype=np.uint8)
    tracklet = np.arange(args.batch, dtype=np.int32) // 2
    mask = np.ones((args.batch, args.frames), bool)
    with jax.threefry_partitionable(False):
        variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros(clips.shape, jnp.float32))

    def step(sums, weights, variables, clips, tracklet, mask):
        out = model.apply(variables, normalize(clips), train=False)
        return accumulate(sums, weights, out["bn_features"], tracklet, mask)

    features = jax.eval_shape(lambda: model.apply(variables, normalize(clips), train=False))
    sums = jnp.zeros((args.batch, features["bn_features"].shape[-1]))
    weights = jnp.zeros(args.batch)
    t0 = time.perf_counter()
    compiled = (
        jax.jit(step, donate_argnums=(0, 1))
        .lower(sums, weights, variables, clips, tracklet, mask)
        .compile()
    )
    compile_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        sums, weights = compiled(sums, weights, variables, clips, tracklet, mask)
    jax.block_until_ready(sums)
    t0 = time.perf_counter()
    for _ in range(args.steps):  # the host sends each batch, as in the evaluator
        sums, weights = compiled(sums, weights, variables, jnp.asarray(clips), tracklet, mask)
    jax.block_until_ready(sums)
    dt = (time.perf_counter() - t0) / args.steps
    return {"frames_per_s": args.batch * args.frames / dt, "step_s": dt, "compile_s": compile_s}


def bench_torch(args):
    import torch
    from torch import nn
    from torch_resnet import TorchResNet

    torch.manual_seed(0)
    trunk = TorchResNet(dims=3, variant=args.variant, last_stride=1, num_classes=0)
    bn = nn.BatchNorm1d(2048)
    nn.ModuleList([trunk, bn]).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1) * 255
    rng = np.random.default_rng(0)
    h, w = frame_size(args.tiny)
    clips = rng.integers(0, 256, (args.batch, args.frames, h, w, 3), dtype=np.uint8)

    def step():
        with torch.inference_mode():
            x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float()
            x = (x - mean) / std
            feat = trunk(x).amax(dim=(3, 4)).mean(dim=2)
            return bn(feat)

    dt, _ = time_eager(step, args.warmup, args.steps)
    return {
        "frames_per_s": args.batch * args.frames / dt,
        "step_s": dt,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main(argv):
    del argv
    args = flags.FLAGS
    only = set(args.only)
    result = header(
        "eval",
        variant=args.variant,
        batch=args.batch,
        frames=args.frames,
        size="{}x{}".format(*frame_size(args.tiny)),
    )
    for name, dtype in (("jax_f32", jnp.float32), ("jax_bf16", jnp.bfloat16)):
        if name in only:
            result[name] = bench_jax(args, dtype)
            print(f"{name}: {result[name]['frames_per_s']:.1f} frames/s", flush=True)
    if "torch" in only:
        result["torch_eager"] = bench_torch(args)
        print(f"torch_eager: {result['torch_eager']['frames_per_s']:.1f} frames/s", flush=True)
        for name in ("jax_f32", "jax_bf16"):
            if name in result:
                result[f"ratio_{name}_vs_torch"] = (
                    result[name]["frames_per_s"] / result["torch_eager"]["frames_per_s"]
                )
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
