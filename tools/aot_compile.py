"""Compiles a recipe's train and evaluation steps for a TPU slice, on this (CPU) host.

    python tools/aot_compile.py --config configs/strf_mars.py --topology v5e:2x4
    python tools/aot_compile.py --config configs/dsanet_lsvid.py --topology v5p-8 \
        --per_chip_batch 16
    python tools/aot_compile.py --config configs/strf_mars.py --topology v4:2x2x1 --attribute 15

Needs libtpu, the TPU compiler (`pip install "jax[tpu]==<jax version>"`), and no TPU: the
real XLA TPU compiler compiles the step the training loop runs (same shardings, donation
and guard; batch split over the slice) against compile-only devices. It prints the compile
time, per-chip HBM (arguments, temporaries, outputs, total) against the chip's capacity,
FLOPs and bytes accessed per step per chip, a roofline lower bound on the step time from the
chip's published peaks (bf16 FLOP/s and HBM bandwidth), and the whole recipe's train steps
at that bound. An out-of-memory step fails here, at compile time, with the compiler's
message. `--attribute N` prints the N largest groups of the train step's bytes by model part
and by primitive. The last line is one JSON object.

Topologies as JAX spells them (`v4:2x2x1`, `v5e:2x4`, `v5p:2x2x1`, `v6e:2x4`) or Cloud
TPU's names (`v4-8`, `v5e-8`, `v5p-8`, `v6e-8`). On v4 the compiler's devices are single
TensorCores (two per chip); figures are given per chip. A GPU host, `h100-8` (eight H100
SXM), compiles with XLA's GPU compiler and no GPU when jax's CUDA plugin is installed
(`pip install "jax[cuda12]==<jax version>"`); that compiler gives memory but no cost
analysis, so FLOPs come from XLA's analysis of one device's share of the same program and
bytes from the compiled module's ops (`reidjax.accelerators.hlo_bytes`).
"""

import json
import os
import sys

# The host's own devices are not used: compile-only TPU devices come from libtpu.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
from absl import app, flags

from reidjax import cli, experiment
from reidjax.accelerators import aot, hlo_bytes, targets
from reidjax.errors import USER_ERRORS

_CONFIG, _PRINT = cli.define_config_flags("Experiment config file")
flags.adopt_module_key_flags(cli)
_TOPOLOGY = flags.DEFINE_string("topology", "v5e:2x4", "TPU topology (v5e:2x4, v4-8, ...).")
_BATCH = flags.DEFINE_integer(
    "per_chip_batch", 0, "Training clips per chip (0: the config's global batch over the slice)."
)
_STEPS = flags.DEFINE_integer(
    "steps_per_epoch", 0, "Steps per epoch for the recipe's time (0: the prepared data's plan, "
    "else an estimate from the published training split)."
)  # fmt: skip
_ONLY = flags.DEFINE_enum("only", "both", ["both", "train", "eval"], "Which steps to compile.")
_ATTRIBUTE = flags.DEFINE_integer("attribute", 0, "Print the N largest byte groups.")
_DEPTH = flags.DEFINE_integer("depth", 3, "Module depth of the byte groups.")
_SAVE_HLO = flags.DEFINE_string("save_hlo", "", "Write the compiled steps' HLO text here.")

G = 1e9


def gib(n: float) -> str:
    return f"{n / aot.GiB:.2f} GiB"


def steps_per_epoch(config) -> tuple[int | None, str]:
    """The recipe's steps per epoch and where the number comes from."""
    if _STEPS.value:
        return _STEPS.value, "--steps_per_epoch"
    try:
        _, plan = experiment.plan_only(config)
        return plan.steps_per_epoch, "the prepared data's plan"
    except USER_ERRORS:
        pass
    estimate = aot.estimated_steps_per_epoch(config)
    if estimate is None:
        return None, "unknown (prepare the data or pass --steps_per_epoch)"
    return estimate, "estimated from the published training split"


def step_lines(label: str, r: aot.Compiled, cost: aot.StepCost) -> list[str]:
    per_chip = 1 / r.share
    bound, compute, memory = r.bound_s(cost)
    flops = cost.flops or float("nan")
    capacity = r.chip.hbm_bytes
    hbm = cost.hbm_bytes * per_chip
    return [
        f"{label}: compiled in {cost.compile_s:.1f} s; HBM per chip {gib(hbm)} of "
        f"{gib(capacity)} ({hbm / capacity:.0%}): arguments {gib(cost.argument_bytes * per_chip)}, "
        f"temporaries {gib(cost.temp_bytes * per_chip)}, outputs "
        f"{gib(cost.output_bytes * per_chip)} ({gib(cost.alias_bytes * per_chip)} of them in "
        f"donated buffers)",
        f"{label}: {flops * per_chip / G:,.1f} GFLOP, {cost.bytes_accessed * per_chip / G:,.2f} "
        f"GB accessed (cost analysis, on-chip memory included), "
        f"{cost.hbm_accessed * per_chip / G:,.2f} GB of it in HBM per chip per step "
        f"({flops / max(cost.hbm_accessed, 1):.1f} FLOP per HBM byte); bound "
        f"{bound * 1e3:.2f} ms ({'memory' if memory >= compute else 'compute'}-bound: "
        f"{compute * 1e3:.2f} ms at {r.chip.bf16_flops / 1e12:g} TFLOP/s, {memory * 1e3:.2f} ms "
        f"at {r.chip.hbm_bandwidth / 1e9:g} GB/s)",
    ]


def attribution_lines(cost: aot.StepCost, n: int, depth: int) -> list[str]:
    a = hlo_bytes.attribute(cost.hlo, depth)
    lines = [
        f"bytes of the train step's {a['ops']} top-level ops per device: {a['hbm'] / G:.2f} "
        f"GB in HBM of {a['total'] / G:.2f} GB read and written (operands + outputs, on-chip "
        f"memory included; the cost analysis counts {cost.bytes_accessed / G:.2f} GB)"
    ]
    for key, title in (("direction_part", "model part"), ("primitive", "primitive"),
                       ("opcode", "HLO opcode")):  # fmt: skip
        lines.append(f"  HBM bytes by {title}:")
        lines += [f"    {b / G:8.3f} GB {b / a['hbm']:6.1%}  {k}" for k, b in a[f"hbm_{key}"][:n]]
    moved = sorted(hlo_bytes.transfers(cost.hlo).items(), key=lambda kv: -kv[1])
    if moved:  # TPU modules; a GPU module has no on-chip copies
        lines.append("  HBM bytes of the copies between HBM and on-chip memory, by what they move:")
        lines += [f"    {b / G:8.3f} GB {b / a['hbm']:6.1%}  {k}" for k, b in moved]
    return lines


def main(argv):
    del argv
    # Executables for compile-only devices cannot be loaded on this host: keep them out of
    # the persistent compilation cache (reading one back fails with a warning).
    jax.config.update("jax_compilation_cache_dir", None)

    def run() -> int:
        config = cli.config()
        devices = targets.devices(_TOPOLOGY.value)
        _, share = aot.chip_of(devices[0])
        per_device = None
        if _BATCH.value:
            per_device = _BATCH.value * share
            if per_device != int(per_device):
                raise aot.AOTError(
                    f"--per_chip_batch {_BATCH.value}: a {devices[0].device_kind} chip is "
                    f"{round(1 / share)} devices here; give a multiple of {round(1 / share)}"
                )
            per_device = int(per_device)
        print(f"compiling {cli.config_path()} for {_TOPOLOGY.value}: {len(devices)} "
              f"{devices[0].device_kind} devices...", flush=True)  # fmt: skip
        r = aot.compile_run(
            config,
            devices,
            per_device_batch=per_device,
            train=_ONLY.value != "eval",
            evaluate=_ONLY.value != "train",
        )
        c = r.config
        spe, spe_source = steps_per_epoch(c)  # of the batch as compiled
        global_batch = c.train.ids_per_batch * c.train.clips_per_id
        print(
            f"{c.model.name} ({c.model.variant}), {c.model.dtype} compute, "
            f"{c.model.strided_conv} strided convs, remat {c.model.remat}; "
            f"{r.chips} chips ({len(devices)} devices); "
            f"train {global_batch} clips ({global_batch / r.chips:g} per chip), eval "
            f"{c.eval.batch_size} clips, x {c.input.num_frames} frames of "
            f"{c.input.height}x{c.input.width}"
        )
        for label, cost in (("train step", r.train), ("eval step", r.eval)):
            if cost is not None:
                print("\n".join(step_lines(label, r, cost)))
        numbers = {
            "compiled": True,
            "config": cli.config_path(),
            "topology": _TOPOLOGY.value,
            "chips": r.chips,
            "devices": len(devices),
            "device_kind": devices[0].device_kind,
            "hbm_capacity_bytes": r.chip.hbm_bytes,
            "dtype": c.model.dtype,
            "remat": c.model.remat,
            "global_batch": global_batch,
            "per_chip_batch": global_batch / r.chips,
        }
        if r.train is not None:
            bound = r.bound_s(r.train)[0]
            total = c.train.num_steps or (c.train.epochs * spe if spe else None)
            hours = total * bound / 3600 if total else None
            print(
                f"recipe: {f'{total:,} steps' if total else 'steps unknown'} "
                f"({spe or '?'} per epoch, {spe_source})"
                + (f": at least {hours:.2f} h of train steps on {r.chips} chips" if hours else "")
            )
            numbers.update(
                hbm_bytes_per_chip=int(r.train.hbm_bytes / r.share),
                temp_bytes_per_chip=int(r.train.temp_bytes / r.share),
                argument_bytes_per_chip=int(r.train.argument_bytes / r.share),
                flops_per_step_per_chip=r.train.flops and r.train.flops / r.share,
                bytes_per_step_per_chip=r.train.bytes_accessed / r.share,
                hbm_bytes_per_step_per_chip=r.train.hbm_accessed / r.share,
                step_time_bound_s=bound,
                compile_s=round(r.train.compile_s, 1),
                steps_per_epoch=spe,
                total_steps=total,
                recipe_hours_bound=hours,
            )
        if r.eval is not None:
            numbers.update(
                eval_hbm_bytes_per_chip=int(r.eval.hbm_bytes / r.share),
                eval_flops_per_step_per_chip=r.eval.flops and r.eval.flops / r.share,
                eval_bytes_per_step_per_chip=r.eval.bytes_accessed / r.share,
                eval_hbm_bytes_per_step_per_chip=r.eval.hbm_accessed / r.share,
                eval_step_time_bound_s=r.bound_s(r.eval)[0],
                eval_compile_s=round(r.eval.compile_s, 1),
            )
        if _SAVE_HLO.value:
            os.makedirs(_SAVE_HLO.value, exist_ok=True)
            for label, cost in (("train", r.train), ("eval", r.eval)):
                if cost is not None:
                    with open(os.path.join(_SAVE_HLO.value, f"{label}.hlo"), "w") as f:
                        f.write(cost.hlo)
        if _ATTRIBUTE.value and r.train is not None:
            print("\n".join(attribution_lines(r.train, _ATTRIBUTE.value, _DEPTH.value)))
        print(json.dumps(numbers))
        return 0

    return cli.run_or_explain(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
