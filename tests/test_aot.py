# ruff: noqa: E501 (the hand-written HLO module keeps its long lines)
"""Compiling for a TPU slice on this CPU host (libtpu's compiler, compile-only devices):
the smoke configs' real train and eval steps, the tool's JSON line, its errors, and the
bytes attribution of a compiled module against a hand count."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from reidjax import experiment
from reidjax.accelerators import aot, hlo_bytes, targets
from reidjax.config.config_lib import load_config
from reidjax.data_setup import registry_meta
from reidjax.errors import ConfigError
from reidjax.models.factory import dummy_clips

ROOT = Path(__file__).resolve().parents[1]
HAVE_LIBTPU = importlib.util.find_spec("libtpu") is not None
# CI installs libtpu (requirements-dev.txt): there a missing compiler is a failure, not a skip.
needs_libtpu = pytest.mark.skipif(
    not HAVE_LIBTPU and not os.environ.get("CI"),
    reason="libtpu (the TPU compiler) is not installed: pip install -r requirements-dev.txt",
)

HLO = """\
HloModule jit_step, entry_computation_layout={(f32[8,128]{1,0}, bf16[4]{0})->f32[8,128]{1,0}}

%fused_computation (param_0: f32[8,128], param_1: bf16[4]) -> f32[8,128] {
  %param_0 = f32[8,128]{1,0} parameter(0)
  ROOT %multiply.9 = f32[8,128]{1,0} multiply(%param_0, %param_0)
}

%body (p: (s32[], f32[8,128])) -> (s32[], f32[8,128]) {
  %p = (s32[], f32[8,128]{1,0}) parameter(0)
  %gte.1 = f32[8,128]{1,0} get-tuple-element(%p), index=1
  %neg.1 = f32[8,128]{1,0} negate(%gte.1), metadata={op_name="jit(step)/jvp(Net)/trunk/block/neg"}
  %gte.0 = s32[] get-tuple-element(%p), index=0
  ROOT %t = (s32[], f32[8,128]{1,0}) tuple(%gte.0, %neg.1)
}

%cond (p: (s32[], f32[8,128])) -> pred[] {
  %p = (s32[], f32[8,128]{1,0}) parameter(0)
  %gte = s32[] get-tuple-element(%p), index=0
  %c = s32[] constant(3)
  ROOT %lt = pred[] compare(%gte, %c), direction=LT
}

ENTRY %main (x: f32[8,128], y: bf16[4]) -> f32[8,128] {
  %x = f32[8,128]{1,0} parameter(0)
  %y = bf16[4]{0} parameter(1)
  %fusion = f32[8,128]{1,0} fusion(%x, %y), kind=kLoop, calls=%fused_computation, metadata={op_name="jit(step)/transpose(jvp(Net))/trunk/bn/mul"}
  %cs = (f32[8,128]{1,0:S(1)}, f32[8,128]{1,0}, u32[]) copy-start(%fusion)
  %cd = f32[8,128]{1,0:S(1)} copy-done(%cs)
  %zero = s32[] constant(0)
  %init = (s32[], f32[8,128]{1,0}) tuple(%zero, %fusion)
  %loop = (s32[], f32[8,128]{1,0}) while(%init), condition=%cond, body=%body
  ROOT %add = f32[8,128]{1,0} add(%cd, %fusion), metadata={op_name="jit(step)/add"}
}
"""


def test_bytes_of_a_hand_written_module():
    ops = {op.name: op for op in hlo_bytes.parse(HLO)}
    a = 8 * 128 * 4  # one f32[8,128]
    # The fusion reads x and y (bf16[4]: 8 bytes), writes one array; the copy to on-chip
    # memory (S(1)) reads one array from HBM and writes none there; the loop body's
    # negate and the condition's compare are found through the while op.
    assert ops["fusion"].bytes == a + 8 + a and ops["fusion"].hbm == a + 8 + a
    assert ops["cs"].bytes == 2 * a and ops["cs"].hbm == a
    assert ops["add"].bytes == 3 * a and ops["add"].hbm == 2 * a  # %cd lives in S(1)
    assert ops["neg.1"].bytes == 2 * a and ops["lt"].bytes == 4 + 4 + 1
    assert set(ops) == {"fusion", "cs", "add", "neg.1", "lt"}  # views and tuples move nothing
    assert "multiply.9" not in ops  # inside the fusion
    groups = hlo_bytes.attribute(HLO)
    assert groups["total"] == sum(op.bytes for op in ops.values())
    parts = dict(groups["direction_part"])
    assert parts["backward: trunk/bn"] == ops["fusion"].bytes
    assert parts["forward: trunk/block"] == ops["neg.1"].bytes
    assert parts["step: (step)"] == ops["add"].bytes


TRANSFERS = """\
ENTRY %main (w: f32[64,128], x: bf16[8,128]) -> f32[8,128] {
  %w = f32[64,128]{1,0} parameter(0)
  %x = bf16[8,128]{1,0} parameter(1)
  %wv = f32[64,128]{1,0} bitcast(%w)
  %ws = ((f32[64,128]{1,0}), f32[16,128]{1,0:S(1)}, s32[]) slice-start(%wv), slice={[0:16], [0:128]}
  %wd = f32[16,128]{1,0:S(1)} slice-done(%ws)
  %f = f32[8,128]{1,0:S(1)} fusion(%x), kind=kLoop, calls=%c
  %out = (f32[8,128]{1,0}, f32[8,128]{1,0:S(1)}, u32[]) copy-start(%f)
  %od = f32[8,128]{1,0} copy-done(%out)
  %p = f32[8,256]{1,0} pad(%od, %wd), padding=0_0x0_128
  %in = (f32[8,256]{1,0:S(1)}, f32[8,256]{1,0}, u32[]) copy-start(%p)
  %id = f32[8,256]{1,0:S(1)} copy-done(%in)
  ROOT %r = f32[8,128]{1,0} slice(%id), slice={[0:8], [0:128]}
}
"""


def test_transfers_of_a_hand_written_module():
    """A slice of a parameter (through a view) read into VMEM, a fusion's output stored to
    HBM, a padded copy of it read back."""
    moved = hlo_bytes.transfers(TRANSFERS)
    assert moved == {
        "parameters into VMEM": 16 * 128 * 4,
        "written to HBM": 8 * 128 * 4,
        "activations into VMEM": 8 * 256 * 4,
        "activations into VMEM read from pad/copy outputs": 8 * 256 * 4,
    }


def test_steps_per_epoch_estimate_by_hand():
    config = load_config("strf_mars")
    # MARS: 8,298 training tracklets of 625 ids; chunks of K = 4 drop (K-1)/2 per id on
    # average; P x K = 32 clips a step: (8298 - 625 * 1.5) / 32 = 230.0.
    assert aot.estimated_steps_per_epoch(config) == 230
    assert aot.estimated_steps_per_epoch(load_config("dsanet_lsvid")) is None  # not published


def test_target_config_resolves_as_an_accelerator_does():
    config = load_config("dsanet_lsvid")
    c = aot.target_config(config, 8, per_device_batch=8)
    assert (c.model.dtype, c.model.strided_conv, c.mesh.data) == ("bfloat16", "native", 8)
    assert c.model.remat == "convs"
    assert c.train.ids_per_batch * c.train.clips_per_id == 64
    assert config.model.dtype == "auto"  # the config itself is unchanged
    with pytest.raises(ConfigError, match="whole number of identities"):
        aot.target_config(config, 2, per_device_batch=1)  # 2 clips: half an identity


def test_without_libtpu_one_line_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(aot.AOTError, match=r'pip install "jax\[tpu\]==' + jax.__version__):
        aot.tpu_devices("v5e:2x4")


@needs_libtpu
def test_unknown_topology_is_one_line():
    with pytest.raises(aot.AOTError, match="does not know the topology 'v5e:3x7'"):
        aot.tpu_devices("v5e:3x7")
    devices = aot.tpu_devices("v5e-8")  # Cloud's name for the same slice
    assert len(devices) == 8 and devices[0].device_kind == "TPU v5 lite"
    chip, share = aot.chip_of(aot.tpu_devices("v4:2x2x1")[0])
    assert chip.name == "v4" and share == 0.5  # v4's compile-only devices are TensorCores


@pytest.mark.slow
@needs_libtpu
def test_dsanet_smoke_steps_compile_for_v5e():
    config = load_config("dsanet_mars", "smoke")
    r = aot.compile_run(config, aot.tpu_devices("v5e:2x4"))
    train, evaluate = r.train, r.eval
    # The train step's arguments hold the replicated state: float32 parameters and Adam's
    # two moments (3 copies), plus the BN statistics and this device's slice of the batch.
    model = experiment.build(r.config, registry_meta(r.config))
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(r.config))
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    assert train.argument_bytes >= 3 * 4 * params
    assert train.flops > 0 and train.bytes_accessed > 0
    assert 0 < train.hbm_bytes < r.hbm_capacity
    assert train.alias_bytes >= 3 * 4 * params  # the state's buffers are donated
    assert evaluate.flops > 0 and evaluate.alias_bytes > 0  # the feature sums are donated
    assert r.bound_s(train)[0] > 0


@pytest.mark.slow
@needs_libtpu
def test_aot_compile_tool_prints_the_json_line(tmp_path):
    cache = tmp_path / "cache"
    run = subprocess.run(
        [sys.executable, "tools/aot_compile.py", "--config", "configs/strf_mars.py:smoke",
         "--topology", "v5e-8", "--attribute", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "REIDJAX_COMPILATION_CACHE": str(cache)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    numbers = json.loads(lines[-1])
    assert numbers["compiled"] and numbers["chips"] == 8 and numbers["remat"] == "convs"
    assert numbers["device_kind"] == "TPU v5 lite"
    assert numbers["hbm_capacity_bytes"] == 16 * 2**30
    for key in ("hbm_bytes_per_chip", "flops_per_step_per_chip", "bytes_per_step_per_chip",
                "hbm_bytes_per_step_per_chip", "step_time_bound_s", "recipe_hours_bound",
                "eval_hbm_bytes_per_chip"):  # fmt: skip
        assert numbers[key] > 0, key
    # The bound is the roofline: the larger of compute time and HBM time at the chip's peaks.
    chip = aot.CHIPS["TPU v5 lite"]
    expect = max(
        numbers["flops_per_step_per_chip"] / chip.bf16_flops,
        numbers["hbm_bytes_per_step_per_chip"] / chip.hbm_bandwidth,
    )
    # HBM traffic is part of what the cost analysis counts (which includes on-chip memory).
    assert numbers["hbm_bytes_per_step_per_chip"] <= numbers["bytes_per_step_per_chip"]
    np.testing.assert_allclose(numbers["step_time_bound_s"], expect, rtol=1e-12)
    assert any(line.startswith("  HBM bytes by model part:") for line in lines)
    assert any(line.endswith("  parameters into VMEM") for line in lines)  # transfer rows
    assert "Traceback" not in run.stderr
    # TPU executables cannot be loaded on this host: none is written to the CPU's cache.
    assert not cache.exists() or not any(cache.iterdir()), sorted(cache.iterdir())


def test_gpu_host_without_the_cuda_plugin_is_one_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(aot.AOTError, match=r'pip install "jax\[cuda12\]=='):
        targets.devices("h100-8")
    with pytest.raises(aot.AOTError, match="unknown GPU host"):
        aot.gpu_devices("h100-eight")
