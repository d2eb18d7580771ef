"""Export a trained model's inference function with `jax.export` (StableHLO).

    reidjax-export --workdir runs/demo --platforms cpu,cuda,tpu --out model.bin
    reidjax-export --workdir runs/demo --checkpoint best --batch 16 --out model.bin

The exported function maps a batch of uint8 clips `[B, T, H, W, 3]` to the model's test
feature per clip `[B, D]` (a DSANet pooling FWG over whole tracklets: per-frame features
`[B, T, D]` and log-weights `[B, T]`); `reidjax.serving.exported.load(path).embed(tracklets)` (jax
and numpy, no model code) wraps it in the run's test rule. The parameters are **inside**
the file, as constants of the StableHLO module: one self-contained file that cannot be
paired with the wrong weights, at the cost of a file as large as the parameters (about 100
MB for a ResNet-50). One file runs on every platform it was exported for (`--platforms`).
The batch size B is fixed (default: the run's eval.batch_size); the loader pads the last
batch.

Serving: load it once per process with `reidjax.serving.exported.load` (or
`jax.export.deserialize` on the bytes after the header) and call `.embed` or
`.exported.call(clips)`; any JAX with a matching or newer serialization version runs it,
on CPU, GPU or TPU, with no reidjax, flax or model code.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from reidjax import cli
from reidjax.errors import USER_ERRORS, UserError
from reidjax.serving import exported
from reidjax.serving.inference import Embedder

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run.", required=True)
_OUT = flags.DEFINE_string("out", None, "The file to write.", required=True)
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu"], "Comma-separated: cpu,cuda,rocm,tpu.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, best or a step.")
_BATCH = flags.DEFINE_integer("batch", 0, "Clips per call (0: the run's eval batch).")


def export(
    workdir: str, out: str, platforms=("cpu",), checkpoint="latest", batch=None, overrides=()
) -> dict:
    """Exports the run's inference function to `out`; returns the header written."""
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise UserError(f"unknown platforms {unknown}; valid: {list(PLATFORMS)}")
    embedder = Embedder.from_workdir(workdir, checkpoint, overrides)
    config = embedder.config
    b = batch or config.eval.batch_size
    t, (h, w) = config.input.num_frames, embedder.frame_size
    variables = jax.device_get(embedder.variables)

    def features(clips):
        out = embedder.model.predict(variables, clips)
        return jax.tree.map(lambda x: x.astype(jnp.float32), out)

    spec = jax.ShapeDtypeStruct((b, t, h, w, 3), jnp.uint8)
    start = time.perf_counter()
    artifact = jax.export.export(jax.jit(features), platforms=tuple(platforms))(spec)
    header = {
        "workdir": os.path.abspath(workdir),
        "step": embedder.step,
        "model": config.model.name,
        "frame_size": [h, w],
        "num_frames": t,
        "batch": b,
        "dim": int(artifact.out_avals[0].shape[-1]),
        "test_sampler": config.input.test_sampler,
        "test_padding": config.input.test_padding,
        "clip_weights": config.eval.clip_weights,
        "frame_pooling": embedder.model.frame_pooling,
        "distance": config.eval.distance,
        "platforms": list(platforms),
        "seconds": round(time.perf_counter() - start, 1),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    exported.write(out, header, artifact.serialize())
    return header


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    try:
        header = export(args.workdir, args.out, args.platforms, args.checkpoint, args.batch or None)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.out) / 2**20
    print(
        f"wrote {args.out}: {header['model']} step {header['step']}, clips of "
        f"{header['num_frames']} x {header['frame_size'][0]}x{header['frame_size'][1]} in "
        f"batches of {header['batch']} -> {header['dim']} features, for "
        f"{', '.join(header['platforms'])}; {size:.1f} MiB (parameters inside)"
    )
    return 0


def run() -> None:
    """The console command (`[project.scripts]` in pyproject.toml)."""
    cli.console(main)


if __name__ == "__main__":
    run()
