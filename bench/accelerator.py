"""One prepared run on a GPU or TPU host: the train step and the input pipeline that feeds it.

    python bench/accelerator.py                                # strf_mars, all local devices
    python bench/accelerator.py --config configs/dsanet_lsvid.py --steps 30
    python bench/accelerator.py --tiny                         # smoke config on CPU (tests)

Train step: the step the training loop runs (`train_lib.compile_train_step`: the config's
global batch of 32 clips split over the local devices, the config's compute dtype, random
weights, a fixed device-resident batch, so that only the step is timed): compile time,
step time and clips/s over `--steps` steps after `--warmup`, XLA's FLOP count per step, the
model FLOP utilisation against the device's published bf16 peak, and the peak device
memory from `memory_stats()`; once for each `--remat` mode (the first is the default
`convs`; `none` keeps every activation, as the step did before `convs` was the default, so
the two show what recomputing the elementwise work costs or saves on this device). Input
pipeline: the synthetic dataset built at the config's
frame size, streamed as the config's training batches with as many reader threads as this
host has cores, against the single-core JPEG decode rate measured in the same run.
Made to finish in under 5 minutes; the last line is JSON.
"""

import json
import os
import tempfile
import time

import jax
import numpy as np
import simplejpeg
from absl import app, flags
from common import header

from input_pipeline.batch import TRAIN_FIELDS, train_batch_spec
from input_pipeline.build import build_dataset
from input_pipeline.pipelines import iterate, to_device, train_dataset
from reidjax import cli, experiment
from reidjax.accelerators import aot
from reidjax.config.config_lib import load_config
from reidjax.data_setup import registry_meta
from reidjax.models.factory import compute_dtype
from reidjax.runtime import sharding
from reidjax.training import train_lib
from reidjax.training.optim import build_optimizer
from reidjax.training.state import create_state, init_variables

_CONFIG, _PRINT = cli.define_config_flags("Experiment config file (default configs/strf_mars.py)")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed train steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed train steps after compiling.")
_BATCHES = flags.DEFINE_integer("batches", 40, "Timed input-pipeline batches.")
_IDS = flags.DEFINE_integer("ids", 80, "Synthetic identities to build for the pipeline.")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "bf16 peak per device (0: from the device).")
_REMAT = flags.DEFINE_list("remat", ["convs", "none"], "model.remat modes to time, in order.")
_TINY = flags.DEFINE_bool("tiny", False, "The smoke config, 2 steps, 8 ids (tests).")
flags.adopt_module_key_flags(cli)

# Dense bf16 peaks per device (NVIDIA data sheets; TPUs: reidjax.accelerators.aot.CHIPS).
GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def peak_flops(device) -> float | None:
    """The device's published dense bf16 FLOP/s, or None when unknown."""
    if _PEAK.value:
        return _PEAK.value * 1e12
    kind = device.device_kind
    if kind in aot.CHIPS:
        chip = aot.CHIPS[kind]
        return chip.bf16_flops * getattr(device, "num_cores", chip.cores) / chip.cores
    for name, tflops in GPU_PEAK_TFLOPS.items():
        if name in kind:
            return tflops * 1e12
    return None


def train_step(config, remat: str) -> dict:
    """Compiles and times the real train step on every local device."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.init.imagenet = "none"  # random weights time the same
        config.mesh.data = -1
        config.model.remat = remat
    mesh = sharding.make_mesh(config)
    spec = experiment.train_spec(config)
    sharding.check_batch(spec.global_batch, mesh)
    model = experiment.build(config, registry_meta(config))
    tx, schedule = build_optimizer(experiment.optim_spec(config), 100, config.train.epochs)
    state = create_state(init_variables(model, config), tx, mesh)
    rng = np.random.default_rng(0)
    c = config.input
    shapes = train_batch_spec(spec.global_batch, c.num_frames, c.height, c.width)
    host = {k: np.zeros(s, d) for k, (s, d) in shapes.items()}
    host["clips"] = rng.integers(0, 256, host["clips"].shape, dtype=np.uint8)
    host["labels"] = np.repeat(np.arange(spec.ids_per_batch), spec.clips_per_id).astype(np.int32)
    (batch,) = to_device([host], sharding.data_sharded(mesh), TRAIN_FIELDS)
    key = jax.random.key(1)
    begin = time.perf_counter()
    step = train_lib.compile_train_step(model, tx, schedule, mesh).lower(state, batch, key)
    step = step.compile()
    compile_s = time.perf_counter() - begin
    cost = step.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list | tuple) else cost).get("flops", 0.0))
    for _ in range(_WARMUP.value):
        state, metrics = step(state, batch, key)
    jax.block_until_ready(state)
    begin = time.perf_counter()
    for _ in range(_STEPS.value):
        state, metrics = step(state, batch, key)
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - begin) / _STEPS.value
    devices = mesh.devices.size
    peak = peak_flops(jax.devices()[0])
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    out = {
        "devices": devices,
        "device_kind": jax.devices()[0].device_kind,
        "global_batch": spec.global_batch,
        "dtype": np.dtype(compute_dtype(config.model.dtype)).name,
        "remat": remat,
        "compile_s": round(compile_s, 1),
        "step_s": seconds,
        "clips_per_s": spec.global_batch / seconds,
        "frames_per_s": spec.global_batch * c.num_frames / seconds,
        "xla_tflops_per_step_per_device": flops / 1e12,
        "mfu": flops / seconds / peak if peak else None,
        "peak_memory_bytes": max((s.get("peak_bytes_in_use", 0) for s in stats), default=0),
        "loss": float(metrics["loss/total"]),
    }
    mfu = "unknown (give --peak_tflops)" if out["mfu"] is None else f"{out['mfu']:.1%}"
    print(
        f"train step (remat {remat}): {out['clips_per_s']:.1f} clips/s ({seconds * 1e3:.1f} "
        f"ms a step of {spec.global_batch} clips on {devices} {out['device_kind']}); compile "
        f"{compile_s:.0f} s; MFU {mfu}; peak memory {out['peak_memory_bytes'] / 2**30:.2f} GiB",
        flush=True,
    )
    return out


def input_pipeline(config, tmp: str) -> dict:
    """The config's training batches from the synthetic dataset at its frame size, with a
    reader thread per core, against one core's JPEG decode rate."""
    c = config.input
    data = build_dataset("synthetic", f"ids{_IDS.value}_cams4_seed0_{c.height}x{c.width}", tmp,
                         quiet=True)  # fmt: skip
    blobs = [data.encoded(i) for i in range(min(2000, data.num_frames))]
    out = np.empty((c.height, c.width, 3), np.uint8)
    begin = time.perf_counter()
    for b in blobs:
        simplejpeg.decode_jpeg(b, buffer=out)
    one_core = len(blobs) / (time.perf_counter() - begin)
    spec = experiment.train_spec(config)
    workers = os.cpu_count() or 1
    stream = iter(iterate(train_dataset(data, spec), workers, "threads"))
    for _ in range(3):
        next(stream)
    begin = time.perf_counter()
    for _ in range(_BATCHES.value):
        next(stream)
    rate = _BATCHES.value * spec.global_batch * c.num_frames / (time.perf_counter() - begin)
    stream.close()
    print(f"input pipeline: {rate:,.0f} frames/s with {workers} reader threads "
          f"(one core decodes {one_core:,.0f} frames/s)", flush=True)  # fmt: skip
    return {"frames_per_s": rate, "workers": workers, "decode_one_core_frames_per_s": one_core}


def main(argv):
    del argv
    path = _CONFIG.value or "configs/strf_mars.py" + (":smoke" if _TINY.value else "")
    if _TINY.value:
        for name, value in (("steps", 2), ("warmup", 1), ("batches", 2), ("ids", 8)):
            flags.FLAGS[name].value = value
    config = load_config(path, overrides=cli.overrides())
    result = header("accelerator", config=path)
    steps = {mode: train_step(config, mode) for mode in _REMAT.value}
    result["train_step"] = steps[_REMAT.value[0]]
    result["train_step_by_remat"] = steps
    with tempfile.TemporaryDirectory() as tmp:
        result["input_pipeline"] = input_pipeline(config, tmp)
    needed = result["train_step"]["frames_per_s"]
    result["pipeline_over_step"] = result["input_pipeline"]["frames_per_s"] / needed
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
