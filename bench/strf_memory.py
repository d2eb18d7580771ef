"""Compiled memory of the full-size STRF-P3D-C forward pass vs the P3D-C baseline.

    python bench/strf_memory.py                 # B=32 clips × 4 frames × 256×128, f32
    python bench/strf_memory.py --batch 8 --train
    python bench/strf_memory.py --tiny          # tiny trunk at 32×64: seconds (tests)

Lowers and compiles `model.apply` under `jax.jit` for a full-size clip batch from shapes
alone (nothing runs), and prints XLA's `memory_analysis()` for both networks with the
analytic size of the STRF affinities: B·(HW)² floats per factor per unit. Then runs the
STRF forward on a small batch with three different inputs and reports the jit cache size
(1 = compiled once). The last line is JSON.
"""

import json
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from common import frame_size

from reidjax import cli
from reidjax.config.config_lib import base_config
from reidjax.experiment import build_module
from reidjax.models.factory import dummy_clips

_BATCH = flags.DEFINE_integer("batch", 32, "Clips per batch.")
_TRAIN = flags.DEFINE_bool("train", False, "Forward+backward instead.")
_TINY = flags.DEFINE_bool("tiny", False, "Tiny trunk on 32x64 frames (tests).")


def config_of(name: str, tiny: bool):
    """The full-size P3D-C network of family `name` (`--tiny`: the tiny trunk at 32x64)."""
    config = base_config()
    config.model.name = name
    config.model.variant = "p3dc"
    if tiny:
        config.model.arch = "tiny"
        config.input.height, config.input.width = frame_size(True)
    return config


def analyse(name: str, batch: int, train: bool, tiny: bool = False) -> dict:
    config = config_of(name, tiny)
    model = build_module(config)
    clips = jax.ShapeDtypeStruct((batch, 4, *frame_size(tiny), 3), jnp.float32)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy_clips(config)))
    if train:

        def fn(v, x):
            def loss(p):
                out, _ = model.apply(
                    {"params": p, "batch_stats": v["batch_stats"]},
                    x,
                    train=True,
                    mutable=["batch_stats"],
                )
                return out["logits"].sum()

            return jax.grad(loss)(v["params"])
    else:

        def fn(v, x):
            return model.apply(v, x)["embedding"]

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(variables, clips).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return {
        "compile_s": round(seconds, 1),
        "temp_mib": mem.temp_size_in_bytes / 2**20,
        "argument_mib": mem.argument_size_in_bytes / 2**20,
        "output_mib": mem.output_size_in_bytes / 2**20,
        "gflops": cost.get("flops", float("nan")) / 1e9,
    }


def affinity_mib(batch: int) -> dict:
    """B·(HW)² float32 per factor: layer2 is 32×16 = 512 positions, layer3 16×8 = 128."""
    per = {"layer2": batch * 512**2 * 4 / 2**20, "layer3": batch * 128**2 * 4 / 2**20}
    return {"per_factor_layer2_mib": per["layer2"], "per_factor_layer3_mib": per["layer3"]}


def compiles_once(tiny: bool = False) -> int:
    model = build_module(config_of("strf", tiny))
    clips = jnp.zeros((1, 4, *frame_size(tiny), 3))
    variables = jax.jit(model.init)(jax.random.key(0), clips)
    forward = jax.jit(lambda v, x: model.apply(v, x)["embedding"])
    for seed in range(3):
        forward(variables, jax.random.normal(jax.random.key(seed), clips.shape)).block_until_ready()
    return forward._cache_size()


def main(argv):
    del argv
    args = flags.FLAGS
    result = {"bench": "strf_memory", "batch": args.batch, "train": args.train}
    for name in ("baseline", "strf"):
        result[name] = analyse(name, args.batch, args.train, args.tiny)
        print(name, result[name], flush=True)
    result["strf_extra_temp_mib"] = result["strf"]["temp_mib"] - result["baseline"]["temp_mib"]
    result["affinity"] = affinity_mib(args.batch)
    result["jit_cache_size_after_3_calls"] = compiles_once(args.tiny)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
