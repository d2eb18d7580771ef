"""Training: end to end, resume == uninterrupted, device counts, clear errors."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from input_pipeline.pipelines import TrainBatches, TrainSpec
from reidjax import checkpoint, sharding, train_lib
from reidjax.config_defaults import load_config
from reidjax.optim import build_optimizer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def synthetic_config(tmp_path, **overrides):
    config = load_config("synthetic", "smoke")
    with config.unlocked():
        config.dataset.dir = str(tmp_path / "data")
        for key, value in overrides.items():
            section, name = key.split(".")
            config[section][name] = value
    return config


def params_of(workdir, config):
    """Latest checkpoint's parameters, restored on one device."""
    data = train_lib.open_dataset(config)
    train_lib.resolve_sizes(config, data)
    tx, _ = build_optimizer(config.optim, 1, config.train.epochs)
    _, variables, _ = train_lib.init_variables(config, jax.random.key(0))
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    target = train_lib.create_train_state(variables, tx, sharding.replicated(mesh))
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    state = ckpt.restore(target)
    ckpt.close()
    return int(state.step), traverse_util.flatten_dict(jax.device_get(state.params))


def test_resume_equals_uninterrupted_and_8_devices_restore_on_1(tmp_path):
    whole = tmp_path / "whole"
    no_eval = {"train.eval_every": -1}
    config = synthetic_config(tmp_path, **no_eval, **{"train.num_steps": 6})
    train_lib.train_and_evaluate(config, str(whole))
    split = tmp_path / "split"
    config = synthetic_config(tmp_path, **no_eval, **{"train.num_steps": 3})
    train_lib.train_and_evaluate(config, str(split))
    # Resume on a different device count: saved on 8 devices, continued on 1.
    config = synthetic_config(tmp_path, **no_eval, **{"train.num_steps": 6, "mesh.data": 1})
    train_lib.train_and_evaluate(config, str(split))
    step_a, a = params_of(str(whole), synthetic_config(tmp_path))
    step_b, b = params_of(str(split), synthetic_config(tmp_path))
    assert step_a == step_b == 6
    for key, value in a.items():
        np.testing.assert_allclose(b[key], value, rtol=1e-5, atol=1e-6, err_msg=str(key))
    logged = [json.loads(line)["step"] for line in (split / "metrics.jsonl").open()]
    assert logged == [2, 3, 4, 6]  # every 2 steps, and the last step of each run
    # config.resume: a new workdir that starts from another run's step-4 checkpoint
    config = synthetic_config(tmp_path, **no_eval, **{"train.num_steps": 6})
    with config.unlocked():
        config.resume = str(split / "checkpoints" / "4")
    train_lib.train_and_evaluate(config, str(tmp_path / "restarted"))
    step_c, c = params_of(str(tmp_path / "restarted"), synthetic_config(tmp_path))
    assert step_c == 6
    for key, value in a.items():
        np.testing.assert_allclose(c[key], value, rtol=1e-5, atol=1e-6, err_msg=str(key))
    logged = [
        json.loads(line)["step"] for line in (tmp_path / "restarted" / "metrics.jsonl").open()
    ]
    assert logged == [6]
    with config.unlocked():
        config.resume = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config\.resume=.*nowhere: no checkpoint"):
        train_lib.train_and_evaluate(config, str(tmp_path / "restarted_again"))


def test_train_step_on_8_devices_equals_1_device(tmp_path):
    # SGD at a large lr: the parameters after the step show the gradients at 0.1 scale
    # (Adam's first update, ~lr·g/(|g|+eps), would amplify rounding of near-zero gradients).
    config = synthetic_config(tmp_path, **{"optim.name": "sgd", "optim.lr": 0.1})
    data = train_lib.open_dataset(config)
    train_lib.resolve_sizes(config, data)
    spec = TrainSpec(4, 2, config.input.num_frames, config.input.train_sampler, seed=0)
    batch = TrainBatches(data, spec)(0)
    batch = {k: batch[k] for k in ("clips", "labels", "cameras")}
    tx, schedule = build_optimizer(config.optim, 4, config.train.epochs)
    model, variables, _ = train_lib.init_variables(config, jax.random.key(0))
    step = train_lib.make_train_step(model, config, tx, schedule)
    results = []
    for n in (1, 8):
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:n]), ("data",))
        repl, data_sharding = sharding.replicated(mesh), sharding.data_sharded(mesh)
        state = train_lib.create_train_state(variables, tx, repl)
        fn = jax.jit(step, in_shardings=(repl, data_sharding, repl), out_shardings=(repl, repl))
        global_batch = sharding.global_batch_array(batch, data_sharding)
        assert len(global_batch["clips"].addressable_shards) == n
        results.append(jax.device_get(fn(state, global_batch, jax.random.key(1))))
    (one, m1), (eight, m8) = results
    np.testing.assert_allclose(m8["loss/total"], m1["loss/total"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert set(m1) >= {"loss/ce", "loss/triplet", "loss/dis", "loss/w", "accuracy", "lr"}


def test_clear_errors(tmp_path):
    config = synthetic_config(tmp_path, **{"mesh.data": 3})
    with pytest.raises(ValueError, match="not divisible by the 3 devices"):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    config = synthetic_config(tmp_path)
    with config.unlocked():
        config.dataset.name, config.dataset.dir = "mars", ""
    with pytest.raises(ValueError, match=r"python -m input_pipeline\.ingest --dataset mars"):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    config = synthetic_config(tmp_path)
    with config.unlocked():
        config.input.height = 64
    with pytest.raises(ValueError, match="ingested frames are 32x64"):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))


def test_train_py_end_to_end_sigterm_and_resume(tmp_path):
    """train.py itself: progress lines, SIGTERM saves a checkpoint, a rerun continues."""
    workdir = tmp_path / "run"
    env = dict(os.environ)  # with the session's compilation cache (conftest.py)
    args = [
        sys.executable, "train.py", "--config", "configs/synthetic.py:smoke",
        "--workdir", str(workdir), f"--config.dataset.dir={tmp_path / 'data'}",
        "--config.train.checkpoint_every=1000",
    ]  # fmt: skip
    process = subprocess.Popen(
        [*args, "--config.train.num_steps=100000"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        for line in process.stdout:
            if line.startswith("step 2/"):
                assert "clips/s" in line and "ETA" in line and "loss" in line
            if line.startswith("step 4/"):
                process.send_signal(signal.SIGTERM)
                break
        out = process.stdout.read()
        assert process.wait(timeout=300) == 0
    finally:
        process.kill()
    stopped = int(out.split("trained to step ")[1].split(";")[0])
    assert 4 <= stopped < 100000
    assert (workdir / "checkpoints" / str(stopped)).is_dir()  # saved although not due
    result = subprocess.run(
        [*args, f"--config.train.num_steps={stopped + 2}"], cwd=ROOT, capture_output=True,
        text=True, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"trained to step {stopped + 2}" in result.stdout
    assert f"step {stopped + 2}/{stopped + 2}" in result.stdout
    assert any(p.name.startswith("events") for p in (workdir / "tensorboard").iterdir())

    # eval.py on that checkpoint: the table, results.json and the three pictures
    out = tmp_path / "report"
    args = [
        sys.executable, "eval.py", "--config", "configs/synthetic.py:smoke",
        "--workdir", str(workdir), f"--config.dataset.dir={tmp_path / 'data'}",
    ]  # fmt: skip
    result = subprocess.run(
        [*args, "--output", str(out), "--save-features"], cwd=ROOT, capture_output=True,
        text=True, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "R1" in result.stdout and "mAP" in result.stdout
    numbers = json.loads((out / "results.json").read_text())
    assert numbers["step"] == stopped + 2 and numbers["num_queries"] > 0
    assert set(numbers) >= {"R1", "R5", "R10", "R20", "mAP", "mINP", "num_gallery"}
    for picture in ("cmc.png", "retrieval.png", "attention.png"):
        assert (out / picture).stat().st_size > 10_000, picture
    with np.load(out / "features.npz") as saved:
        assert saved["query_features"].shape[0] == numbers["num_queries"]
    # the report of the final evaluation of train.py agrees with eval.py
    assert json.loads((workdir / "eval" / "results.json").read_text())["mAP"] == numbers["mAP"]
    # a checkpoint of another model: a clear error, not a traceback
    result = subprocess.run(
        [*args, "--config.model.dsanet.loss_w=False"], cwd=ROOT, capture_output=True, text=True,
        check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "was written by a different model" in result.stderr
    assert "unexpected fwg_classifier/" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_run_equals_one_process(tmp_path):
    """A real 2-process jax.distributed run (gloo CPU collectives on 127.0.0.1, 2 devices
    per process) ends with the parameters of the 1-process run on 4 devices.

    SGD, as in the 8-vs-1-device test: gloo sums the gradients in another order, and Adam's
    first steps (~lr·g/(|g|+eps)) turn that rounding into 3e-6 differences on a few
    near-zero-gradient weights (measured), which would hide a real error's size.
    """
    steps = 3
    single = tmp_path / "single"
    overrides = {"train.num_steps": steps, "train.eval_every": -1, "optim.name": "sgd"}
    config = synthetic_config(tmp_path, **overrides, **{"mesh.data": 4})
    train_lib.train_and_evaluate(config, str(single))
    port = free_port()
    workdir = tmp_path / "multi"
    processes = []
    for rank in range(2):
        env = dict(os.environ)
        env.update(
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            JAX_PLATFORMS="cpu",
            JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(rank),
        )
        args = [
            sys.executable, "train.py", "--config", "configs/synthetic.py:smoke",
            "--workdir", str(workdir), f"--config.dataset.dir={tmp_path / 'data'}",
            f"--config.train.num_steps={steps}", "--config.train.eval_every=-1",
            "--config.optim.name=sgd",
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
        )
    try:
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert "step 3/3" in outputs[0] and "step 3/3" not in outputs[1]  # process 0 logs
    assert f"trained to step {steps}" in outputs[1]
    step_a, a = params_of(str(single), synthetic_config(tmp_path, **overrides))
    step_b, b = params_of(str(workdir), synthetic_config(tmp_path, **overrides))
    assert step_a == step_b == steps
    for key, value in a.items():
        np.testing.assert_allclose(b[key], value, rtol=1e-5, atol=1e-6, err_msg=str(key))
