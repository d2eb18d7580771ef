"""The accelerators reidjax compiles for without having one: their published peaks, their
names, and compile-only devices from the TPU compiler (libtpu) or XLA's GPU compiler.

`tpu_devices("v5e:2x4")` asks libtpu for the devices of a TPU slice, `gpu_devices("h100-8")`
asks jax's CUDA plugin for those of a GPU host described by `H100_TARGET`; neither needs the
hardware. `reidjax.accelerators.aot` compiles the steps for them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import jax

from reidjax.errors import UserError

GiB = 1 << 30


class AOTError(UserError):
    """The TPU compiler is missing, or a topology it does not know was asked for."""


class OutOfMemory(AOTError):
    """The compiler found that the step does not fit in the device's memory."""


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published per-chip peaks of one TPU generation.

    Attributes:
        name: the generation's short name (v5e).
        bf16_flops: peak dense bfloat16 FLOP/s of the chip.
        hbm_bytes: HBM capacity of the chip.
        hbm_bandwidth: HBM bandwidth of the chip, bytes/s.
        cores: TensorCores per chip (a compile-only device may be one of them: v4).
        source: where the figures are published.
    """

    name: str
    bf16_flops: float
    hbm_bytes: int
    hbm_bandwidth: float
    cores: int
    source: str


# Keyed by `device.device_kind`. Figures from Google Cloud's TPU system-architecture pages.
CHIPS: dict[str, Chip] = {
    "TPU v4": Chip("v4", 275e12, 32 * GiB, 1228e9, 2, "https://cloud.google.com/tpu/docs/v4"),
    "TPU v5 lite": Chip("v5e", 197e12, 16 * GiB, 819e9, 1, "https://cloud.google.com/tpu/docs/v5e"),
    "TPU v5": Chip("v5p", 459e12, 95 * GiB, 2765e9, 2, "https://cloud.google.com/tpu/docs/v5p"),
    "TPU v6 lite": Chip("v6e", 918e12, 32 * GiB, 1640e9, 1, "https://cloud.google.com/tpu/docs/v6e"),
    # Dense bf16 tensor-core peak; HBM3 as the device reports it (80 GB, 79.1 GiB usable).
    "NVIDIA H100 80GB HBM3": Chip("h100", 989e12, 84942979072, 3.35e12, 1,
                                  "https://www.nvidia.com/en-us/data-center/h100/"),
}  # fmt: skip

# What XLA's GPU compiler needs to know of a GPU it cannot see (its GpuTargetConfig): the
# H100 SXM's properties from NVIDIA's data sheet and CUDA's device query (sm_90, 132 SMs).
H100_TARGET = """\
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84942979072
  shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 10 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""
GPU_TARGETS = {"h100": H100_TARGET}

# Cloud TPU's accelerator-type names (cores or chips, as Cloud counts them) -> JAX topology.
ALIASES = {
    "v4-8": "v4:2x2x1",
    "v4-16": "v4:2x2x2",
    "v5e-4": "v5e:2x2",
    "v5e-8": "v5e:2x4",
    "v5litepod-8": "v5e:2x4",
    "v5e-16": "v5e:4x4",
    "v5p-8": "v5p:2x2x1",
    "v5p-16": "v5p:2x2x2",
    "v6e-8": "v6e:2x4",
}

INSTALL = (
    'the TPU compiler (libtpu) is not installed; `pip install "jax[tpu]=={v}"` installs it '
    "beside jax {v}; it compiles on this host and needs no TPU"
)
INSTALL_CUDA = (
    'the GPU compiler (jax\'s CUDA plugin) is not installed; `pip install "jax[cuda12]=={v}"` '
    "installs it beside jax {v} (about 5 GB with NVIDIA's libraries); it compiles on this "
    "host and needs no GPU"
)


def devices(topology: str) -> list:
    """Compile-only devices of a TPU topology (`tpu_devices`) or of a GPU host
    (`gpu_devices`: `h100-8`)."""
    if topology.split("-")[0].split(":")[0] in GPU_TARGETS:
        return gpu_devices(topology)
    return tpu_devices(topology)


def gpu_devices(host: str) -> list:
    """The compile-only devices of a GPU host, `MODEL-N` (`h100-8`: 8 H100s).

    Raises:
        AOTError: the CUDA plugin is not installed, or the model is not one described here.
    """
    model, _, count = host.replace(":", "-").partition("-")
    if model not in GPU_TARGETS or not count.isdigit():
        raise AOTError(
            f"unknown GPU host {host!r}; give MODEL-N with MODEL in {sorted(GPU_TARGETS)}"
        )
    if importlib.util.find_spec("jax_plugins.xla_cuda12") is None:
        raise AOTError(INSTALL_CUDA.format(v=jax.__version__))
    from jax.experimental import topologies

    topology = topologies.get_topology_desc(
        platform="cuda", target_config=GPU_TARGETS[model], topology=f"1x1x{count}"
    )
    return list(topology.devices)


def tpu_devices(topology: str) -> list:
    """The compile-only devices of a TPU topology (`v5e:2x4`, or an alias as `v5e-8`).

    Raises:
        AOTError: libtpu is not installed, or the topology is not one it knows.
    """
    if importlib.util.find_spec("libtpu") is None:
        raise AOTError(INSTALL.format(v=jax.__version__))
    name = ALIASES.get(topology, topology)
    from jax._src import hardware_utils
    from jax.experimental import topologies

    if hardware_utils.num_available_tpu_chips_and_device_id()[0] == 0:
        # No TPU here: tell libtpu so, or it prints a page of warnings looking for one.
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-8")
        # Compiling needs no chip to own: several compiling processes may load libtpu.
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        devices = topologies.get_topology_desc(topology_name=name, platform="tpu").devices
    except Exception as e:  # libtpu's message names the problem
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "INVALID_ARGUMENT" not in first and "nvalid" not in first:
            raise AOTError(f"libtpu could not describe {name!r}: {first}") from None
        raise AOTError(
            f"libtpu does not know the topology {topology!r} ({first}); use "
            f"GENERATION:AxB[xC] as v5e:2x4, v4:2x2x1, v5p:2x2x1, or one of {sorted(ALIASES)}"
        ) from None
    return list(devices)


def chip_of(device) -> tuple[Chip, float]:
    """The chip of a device and the share of it one device is (0.5: a v4 TensorCore)."""
    kind = device.device_kind
    if kind not in CHIPS:
        raise AOTError(f"no published peaks for {kind!r}; known: {sorted(CHIPS)}")
    chip = CHIPS[kind]
    return chip, getattr(device, "num_cores", chip.cores) / chip.cores
