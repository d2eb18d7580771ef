"""Compiling for accelerators one does not have: the real steps, the real compiler.

`libtpu` (installed by `pip install "jax[tpu]"`) carries the XLA TPU compiler, and
`jax.experimental.topologies.get_topology_desc` gives compile-only TPU devices on any host,
CPU included. `compile_run` builds a config's train step exactly as the training loop does
(`train_lib.compile_train_step`: the same shardings, donation and divergence guard) and its
evaluation step (`features.FeatureExtractor.step`), lowers both against a mesh of those
devices from shapes only (nothing is allocated or run) and returns what the TPU compiler
says: per-device memory (`memory_analysis()`) and FLOPs and bytes accessed
(`cost_analysis()`). From the chip's published peaks follows a roofline lower bound on the
step time: max(FLOPs / peak FLOP/s, bytes / HBM bandwidth).

The config is resolved as the accelerator would resolve it: `model.dtype="auto"` is
bfloat16, `model.strided_conv="auto"` is XLA's native strided convolution (the CPU-only
polyphase form is for the CPU backend) and `model.remat="auto"` is `convs`.
`tools/aot_compile.py` is the command line.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from input_pipeline import registry
from input_pipeline.batch import eval_batch_spec, train_batch_spec
from reidjax import experiment
from reidjax.accelerators import hlo_bytes
from reidjax.accelerators.targets import (  # noqa: F401 (the accelerators, re-exported for callers)
    ALIASES,
    CHIPS,
    AOTError,
    Chip,
    GiB,
    OutOfMemory,
    chip_of,
    gpu_devices,
    tpu_devices,
)
from reidjax.data_setup import registry_meta
from reidjax.errors import ConfigError
from reidjax.evaluation.features import FeatureExtractor
from reidjax.models.remat import remat_mode
from reidjax.runtime import sharding
from reidjax.training import train_lib
from reidjax.training.optim import build_optimizer
from reidjax.training.state import abstract_state, abstract_variables, with_sharding

# Query + gallery tracklets of the largest test set (MARS: 11,310, LS-VID: 12,112), rounded
# up to a power of two as the feature extractor rounds them: the eval step's sums.
EVAL_TRACKLETS = 16384


def target_config(
    config: ml_collections.ConfigDict, devices: int, per_device_batch: int | None = None
) -> ml_collections.ConfigDict:
    """The config as an accelerator run resolves it: bfloat16, native strided convs and
    remat `convs` for `auto`, the mesh over `devices`, and optionally `per_device_batch`
    clips per device (`train.ids_per_batch` scaled, `train.clips_per_id` kept).

    Raises:
        ConfigError: the batch does not split into whole identities.
    """
    c = config.copy_and_resolve_references()
    with c.unlocked():
        if c.model.dtype == "auto":
            c.model.dtype = "bfloat16"
        if c.model.strided_conv == "auto":
            c.model.strided_conv = "native"
        c.model.remat = remat_mode(c.model.remat, backend="tpu")
        c.mesh.data = devices
        if per_device_batch:
            clips = per_device_batch * devices
            if clips % c.train.clips_per_id:
                raise ConfigError(
                    f"{per_device_batch} clips per device x {devices} devices = {clips} clips "
                    f"is not a whole number of identities of {c.train.clips_per_id} clips"
                )
            c.train.ids_per_batch = clips // c.train.clips_per_id
    return c


def estimated_steps_per_epoch(config: ml_collections.ConfigDict) -> int | None:
    """Steps per epoch of the tracklet-chunk sampler from the published training split,
    without the data: (tracklets − ids·(K−1)/2) / (P·K), each id's remainder below K
    dropped (on average (K−1)/2). None where the split's size is not published, or where
    `dataset.dense_train` cuts it into pieces (their number depends on the lengths)."""
    spec = registry.get(config.dataset.name)
    if not spec.train_tracklets or config.dataset.dense_train:
        return None
    k = config.train.clips_per_id
    if config.train.batch_sampler == "identities":
        return spec.num_train_ids // config.train.ids_per_batch
    kept = spec.train_tracklets - spec.num_train_ids * (k - 1) / 2
    return max(1, int(kept // (config.train.ids_per_batch * k)))


@dataclasses.dataclass(frozen=True)
class StepCost:
    """What the compiler says of one compiled step, per device.

    Attributes:
        compile_s: wall time of `.compile()`.
        argument_bytes, output_bytes, alias_bytes, temp_bytes, code_bytes: from
            `memory_analysis()` (alias: outputs that reuse a donated argument's buffer).
        flops, bytes_accessed: from `cost_analysis()`. Its bytes count every memory an op
            reads or writes, the TPU's on-chip VMEM included.
        hbm_accessed: the bytes the compiled module's ops read from and write to HBM (their
            operands' and outputs' memory spaces, `reidjax.accelerators.hlo_bytes`): what the HBM
            bandwidth limits.
        hlo: the compiled module's text (for the bytes attribution).
    """

    compile_s: float
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    code_bytes: int
    flops: float | None
    bytes_accessed: float
    hbm_accessed: float
    hlo: str = dataclasses.field(repr=False, default="")

    @property
    def hbm_bytes(self) -> int:
        """Peak HBM of the step: arguments, outputs not aliased to them, temporaries, code."""
        return (
            self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes
        )  # fmt: skip


def step_cost(lowered) -> StepCost:
    """Compiles a lowered step and reads the compiler's memory and cost analyses."""
    begin = time.perf_counter()
    try:
        compiled = lowered.compile()
    except Exception as e:  # the compiler's own out-of-memory verdict
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        raise OutOfMemory(" ".join(lines[:2])[:400]) from None
    seconds = time.perf_counter() - begin
    memory = compiled.memory_analysis()
    hlo = compiled.as_text()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    traffic = hlo_bytes.attribute(hlo)
    if cost:
        flops, accessed = cost.get("flops", 0.0), cost.get("bytes accessed", 0.0)
    else:
        # The GPU compiler gives no cost analysis: FLOPs come from `per_device_flops`, bytes
        # as the compiled module's top-level ops read and write them.
        flops, accessed = None, traffic["total"]
    return StepCost(
        compile_s=seconds,
        argument_bytes=int(memory.argument_size_in_bytes),
        output_bytes=int(memory.output_size_in_bytes),
        alias_bytes=int(memory.alias_size_in_bytes),
        temp_bytes=int(memory.temp_size_in_bytes),
        code_bytes=int(memory.generated_code_size_in_bytes),
        flops=None if flops is None else float(flops),
        bytes_accessed=float(accessed),
        hbm_accessed=float(traffic["hbm"]),
        hlo=hlo,
    )


def abstract_batch(spec: dict, mesh: jax.sharding.Mesh) -> dict:
    data = sharding.data_sharded(mesh)
    return {k: jax.ShapeDtypeStruct(s, d, sharding=data) for k, (s, d) in spec.items()}


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A config compiled for a topology: what was compiled and what it costs."""

    config: ml_collections.ConfigDict
    devices: list
    train: StepCost | None
    eval: StepCost | None

    @property
    def chip(self) -> Chip:
        return chip_of(self.devices[0])[0]

    @property
    def share(self) -> float:
        """The share of a chip one device is."""
        return chip_of(self.devices[0])[1]

    @property
    def chips(self) -> int:
        return round(len(self.devices) * self.share)

    def bound_s(self, cost: StepCost) -> tuple[float, float, float]:
        """(bound, compute time, memory time) of a step on one device, in seconds: the
        roofline lower bound max(FLOPs at peak, HBM traffic at HBM bandwidth); compute
        time 0 where the FLOPs are unknown."""
        compute = (cost.flops or 0.0) / (self.chip.bf16_flops * self.share)
        memory = cost.hbm_accessed / (self.chip.hbm_bandwidth * self.share)
        return max(compute, memory), compute, memory

    @property
    def hbm_capacity(self) -> int:
        """HBM of one device (a v4 TensorCore has half its chip's)."""
        return int(self.chip.hbm_bytes * self.share)


def lower_steps(
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    *,
    train: bool = True,
    evaluate: bool = True,
    steps_per_epoch: int = 100,
    eval_tracklets: int = EVAL_TRACKLETS,
) -> tuple:
    """(train step, eval step) of a resolved `config` lowered for `mesh` from shapes only
    (None for a step not asked for)."""
    model = experiment.build(config, registry_meta(config))
    h, w, t = config.input.height, config.input.width, config.input.num_frames
    train_step = eval_step = None
    if train:
        spec = experiment.train_spec(config)
        sharding.check_batch(spec.global_batch, mesh)
        tx, schedule = build_optimizer(
            experiment.optim_spec(config), steps_per_epoch, config.train.epochs
        )
        state = abstract_state(model, config, tx, mesh)
        batch = abstract_batch(train_batch_spec(spec.global_batch, t, h, w), mesh)
        key = with_sharding(jax.eval_shape(lambda: jax.random.key(0)), sharding.replicated(mesh))
        step = train_lib.compile_train_step(model, tx, schedule, mesh)
        train_step = step.lower(state, batch, key)
    if evaluate:
        extractor = FeatureExtractor(
            model.predict, experiment.eval_spec(config), mesh, progress=None
        )
        repl = sharding.replicated(mesh)
        variables = abstract_variables(model, config, mesh)
        clip = jax.ShapeDtypeStruct((1, t, h, w, 3), jnp.uint8)
        out = jax.eval_shape(model.predict, variables, clip)
        frames = isinstance(out, tuple)  # per-frame outputs: a running maximum too
        dim = (out[0] if frames else out).shape[-1]
        acc = [jax.ShapeDtypeStruct((eval_tracklets, dim), jnp.float32, sharding=repl)]
        acc += [jax.ShapeDtypeStruct((eval_tracklets,), jnp.float32, sharding=repl)] * (
            2 if frames else 1
        )
        batch = abstract_batch(eval_batch_spec(config.eval.batch_size, t, h, w), mesh)
        eval_step = extractor.step.lower(tuple(acc), variables, batch)
    return train_step, eval_step


def per_device_flops(config: ml_collections.ConfigDict, devices: int) -> tuple:
    """FLOPs of one device's share of the (train, eval) steps of a resolved `config`, from
    XLA's analysis of the same program lowered for one CPU device with one device's batch
    (for compilers that report no cost analysis: the GPU's). None where a device's share
    is not a whole batch."""
    per_device = config.train.ids_per_batch * config.train.clips_per_id // devices
    try:
        one = target_config(config, 1, per_device)
    except ConfigError:
        return None, None
    with one.unlocked():
        one.eval.batch_size = config.eval.batch_size // devices
    mesh = jax.sharding.Mesh(np.asarray(jax.devices("cpu")[:1]), ("data",))
    return tuple(
        None if lowered is None else (lowered.cost_analysis() or {}).get("flops")
        for lowered in lower_steps(one, mesh)
    )


def compile_run(
    config: ml_collections.ConfigDict,
    devices: list,
    *,
    per_device_batch: int | None = None,
    train: bool = True,
    evaluate: bool = True,
    steps_per_epoch: int = 100,
    eval_tracklets: int = EVAL_TRACKLETS,
) -> Compiled:
    """Compiles the train step and the evaluation step of `config` for `devices`.

    Args:
        config: an experiment config (resolved here by `target_config`).
        devices: compile-only devices (`tpu_devices`, `gpu_devices`), or real ones.
        per_device_batch: training clips per device (default: the config's global batch).
        steps_per_epoch: only sets the learning-rate schedule's decay steps (constants).
        eval_tracklets: rows of the evaluation step's per-tracklet sums.

    Raises:
        ConfigError: the batches do not split over the devices.
        OutOfMemory: a step does not fit in a device's memory.
    """
    config = target_config(config, len(devices), per_device_batch)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    steps = lower_steps(
        config, mesh, train=train, evaluate=evaluate, steps_per_epoch=steps_per_epoch,
        eval_tracklets=eval_tracklets,
    )  # fmt: skip
    costs = [None if lowered is None else step_cost(lowered) for lowered in steps]
    if any(c is not None and c.flops is None for c in costs):
        flops = per_device_flops(config, len(devices))
        costs = [
            c if c is None or c.flops is not None else dataclasses.replace(c, flops=f)
            for c, f in zip(costs, flops, strict=True)
        ]
    return Compiled(config, devices, *costs)
