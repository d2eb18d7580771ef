"""Training: end to end, resume == uninterrupted, device counts, clear errors."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from input_pipeline.batch import TRAIN_FIELDS
from input_pipeline.errors import DatasetError
from input_pipeline.pipelines import to_device
from reidjax import experiment
from reidjax.config import run_config
from reidjax.errors import ConfigError, UserError
from reidjax.evaluation import eval_lib
from reidjax.runtime import sharding
from reidjax.training import checkpoint, train_lib
from reidjax.training.checkpoint import CheckpointNotFoundError
from reidjax.training.optim import build_optimizer
from reidjax.training.state import create_state, init_variables
from tests.runs import assert_bitwise_equal, logged_steps, synthetic_config, variables_of
from tests.two_processes import RUN, uninterrupted_run
from tests.two_processes import STEPS as TWO_PROCESS_STEPS

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Parameters after one SGD step at lr 0.1 on two device layouts: 26x the largest rounding
# effect measured (1.9e-4), 350x below a wiring error (1.76). Derived in the docstring of
# test_trainer_step_on_8_devices_equals_1_device.
CROSS_LAYOUT_ATOL = 5e-3


@pytest.mark.slow
def test_resume_and_rerun_equal_the_uninterrupted_run_bitwise(tmp_path):
    """Same device count (1), Adam: an interrupted run resumed from its checkpoint, a run
    started from another run's checkpoint (config.resume) and a rerun (with a profiler
    trace of two steps) end bitwise equal to the uninterrupted run. XLA's CPU reductions
    are deterministic for a fixed program and device count, so any difference is a real
    resume error (data position, RNG, state)."""
    no_eval = {"train.eval_every": -1}
    whole = tmp_path / "whole"
    train_lib.train_and_evaluate(synthetic_config(tmp_path, **no_eval), str(whole))
    split = tmp_path / "split"
    config = synthetic_config(tmp_path, **no_eval, **{"train.num_steps": 3})
    train_lib.train_and_evaluate(config, str(split))
    train_lib.train_and_evaluate(synthetic_config(tmp_path, **no_eval), str(split))
    assert logged_steps(split) == [2, 3, 4]  # every 2 steps, and the last step of each run
    config = synthetic_config(tmp_path, **no_eval)
    with config.unlocked():
        config.resume = str(split / "checkpoints" / "2")
    restarted = tmp_path / "restarted"
    train_lib.train_and_evaluate(config, str(restarted))
    assert logged_steps(restarted) == [4]
    rerun = tmp_path / "rerun"  # profiled: a trace of steps 2-3, the same numbers
    profiled = synthetic_config(tmp_path, **no_eval, **{"train.profile_steps": 2})
    train_lib.train_and_evaluate(profiled, str(rerun))
    assert list((rerun / "profile").glob("plugins/profile/*/*.xplane.pb"))
    reference = synthetic_config(tmp_path)
    step, expected = variables_of(whole, reference)
    assert step == 4
    for other in (split, restarted, rerun):
        other_step, got = variables_of(other, reference)
        assert other_step == 4
        assert_bitwise_equal(expected, got)
    with config.unlocked():
        config.resume = str(tmp_path / "nowhere")
    with pytest.raises(CheckpointNotFoundError, match=r"config\.resume=.*nowhere: no checkpoint"):
        train_lib.train_and_evaluate(config, str(tmp_path / "restarted_again"))


@pytest.mark.slow
def test_resume_on_another_device_count(tmp_path):
    """A checkpoint written on 8 devices restores on 1 bitwise, and the run continued there
    is bitwise the trainer's own step applied on 1 device to that state and the batches of
    steps 2 and 3: the data position, the step key and the optimizer state carry over.
    (Whether 1 and 8 devices compute the same step, up to reduction-order rounding, is the
    next test's question.)"""
    no_eval = {"train.eval_every": -1}
    moved = tmp_path / "moved"
    config = synthetic_config(tmp_path, **no_eval, **{"train.num_steps": 2, "mesh.data": 8})
    train_lib.train_and_evaluate(config, str(moved))
    _, on_8 = variables_of(moved, config, devices=8)
    _, on_1 = variables_of(moved, config, devices=1)
    assert_bitwise_equal(on_8, on_1)
    config = synthetic_config(tmp_path, **no_eval, **{"mesh.data": 1})
    train_lib.train_and_evaluate(config, str(moved))

    run = experiment.setup(config)
    state = checkpoint.restore_checked(str(moved / "checkpoints"), run.abstract_state, 2)
    step = train_lib.compile_train_step(run.model, run.tx, run.schedule, run.mesh)
    batches = [run.batches(2), run.batches(3)]
    stream = to_device(batches, sharding.data_sharded(run.mesh), TRAIN_FIELDS)
    for batch in stream:
        state, _ = step(state, batch, jax.random.key(config.seed + 1))
    expected = {"params": state.params, "batch_stats": state.batch_stats}
    step_b, got = variables_of(moved, config)
    assert step_b == int(state.step) == 4
    assert_bitwise_equal(traverse_util.flatten_dict(jax.device_get(expected), sep="/"), got)


@pytest.mark.slow
def test_trainer_step_on_8_devices_equals_1_device(tmp_path):
    """The trainer's compiled step (`compile_train_step`, as the loop runs it) on a batch
    split over 8 devices equals the same step on 1 device, within `CROSS_LAYOUT_ATOL`.

    One SGD step at lr 0.1, so the parameters move by lr·g and differ only where the
    gradient does. Two effects make it differ across device layouts: the order of float32
    sums (~6e-8 of the summands each; measured 2.3e-6 here), and, because the network has
    max-pools and max reductions, a near-tied max that this rounding flips sends that
    position's gradient elsewhere (measured 1.9e-4 in the 2-process test). A real error is
    far larger: one of the 8 clips counted twice (and another dropped) moves parameters by
    up to 1.76 (measured). Over several steps early training amplifies the rounding
    (2.5e-3 after 3 steps), so layouts are compared on one step; Adam's first update
    (~lr·g/(|g|+eps)) would amplify it too, hence SGD.
    """
    config = synthetic_config(tmp_path, **{"optim.name": "sgd", "optim.lr": 0.1})
    run = experiment.setup(config)
    # The run's own optimizer and schedule, as the training loop builds them.
    batch, model, tx, schedule = run.batches(0), run.model, run.tx, run.schedule
    variables = init_variables(model, config)
    results = []
    for n in (1, 8):
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:n]), ("data",))
        state = create_state(variables, tx, mesh)
        step = train_lib.compile_train_step(model, tx, schedule, mesh)
        (global_batch,) = to_device([batch], sharding.data_sharded(mesh), TRAIN_FIELDS)
        assert len(global_batch["clips"].addressable_shards) == n
        results.append(jax.device_get(step(state, global_batch, jax.random.key(1))))
    (one, m1), (eight, m8) = results
    np.testing.assert_allclose(m8["loss/total"], m1["loss/total"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=CROSS_LAYOUT_ATOL)
    assert set(m1) >= {"loss/ce", "loss/triplet", "loss/dis", "loss/w", "accuracy", "lr"}


def test_clear_errors(tmp_path):
    config = synthetic_config(tmp_path, **{"mesh.data": 3})
    with pytest.raises(ConfigError, match="not divisible by the 3 devices"):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    config = synthetic_config(tmp_path)
    with config.unlocked():
        config.dataset.name = "mars"
    with pytest.raises(
        DatasetError,
        match=r"mars \(32x64\) is not prepared in .*: python -m input_pipeline build "
        r"--dataset mars --manual_dir DATASET_DIR --data_dir .* --size 32x64",
    ):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))


@pytest.mark.slow
def test_eval_restores_variables_without_an_optimizer(dsanet_run, tmp_path):
    """evaluate_workdir reads params and BN statistics only: with an optimizer name that
    cannot be built it still evaluates, and gives the numbers of the training run's own
    final evaluation."""
    workdir = dsanet_run.workdir
    config = dsanet_run.config.copy_and_resolve_references()
    with config.unlocked():
        config.optim.name = "no-such-optimizer"
    with pytest.raises(ValueError, match="no-such-optimizer"):
        build_optimizer(experiment.optim_spec(config), 1, 1)
    numbers = eval_lib.evaluate_workdir(config, str(workdir), output=str(tmp_path / "report"))
    trained = json.loads((workdir / "eval" / "results.json").read_text())
    assert numbers["step"] == trained["step"] == config.train.num_steps
    assert numbers["mAP"] == trained["mAP"] and numbers["R1"] == trained["R1"]
    resolved = json.loads((workdir / "config.json").read_text())
    assert resolved["model"]["num_classes"] == 8  # half of the 16 smoke identities
    assert resolved["dataset"]["num_cameras"] == 4


@pytest.mark.slow
def test_train_py_and_eval_py_end_to_end(tmp_path):
    """train.py and eval.py themselves, as a user runs them: the default workdir, the
    start-up report, progress lines, SIGTERM saves a checkpoint and exits 75, a rerun
    continues and evaluates; `eval.py --workdir W` alone reproduces that evaluation from
    W/config.json (overrides included); eval.py with --config writes the report, pictures
    and features; a checkpoint of another model and a missing one are one line each."""
    workdir = tmp_path / "runs" / "synthetic_smoke"  # the default for configs/synthetic.py:smoke
    env = dict(os.environ)  # with the session's compilation cache (conftest.py)
    data = f"--config.dataset.data_dir={tmp_path / 'data'}"
    args = [
        sys.executable, str(ROOT / "train.py"), "--config", f"{ROOT}/configs/synthetic.py:smoke",
        data, "--config.train.checkpoint_every=1000", "--config.train.log_every=1",
        "--config.eval.max_rank=5",  # an override eval.py must pick up from config.json
    ]  # fmt: skip
    process = subprocess.Popen(
        [*args, "--config.train.num_steps=100000"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("step 2/"):
                assert "clips/s" in line and "ETA" in line and "loss" in line
            if line.startswith("step 4/"):
                process.send_signal(signal.SIGTERM)
                break
        _, err = process.communicate(timeout=300)
        assert process.returncode == 75, err[-3000:]  # preempted, saved: requeue me
    finally:
        process.kill()
    out = "".join(lines)
    assert lines[0].startswith(f"config: {ROOT}/configs/synthetic.py:smoke {data}")
    assert "--config.eval.max_rank=5" in lines[0]
    assert lines[1].strip() == "workdir: runs/synthetic_smoke"
    for line in (
        "building the synthetic dataset ids16_cams4_seed0_32x64",
        "dsanet (tiny, c2d): 169,479 parameters; synthetic (16 ids, 4 cameras, seed 0)",
        "data: 23 training tracklets of 8 identities; 2 steps per epoch of 8 clips x 2 frames",
        "schedule: 100,000 steps (50000.0 epochs)",
        "mesh data=8; workdir runs/synthetic_smoke",
        "start: from scratch (config.init.imagenet=none)",
    ):
        assert line in out, (line, out)
    # Compiled before the first step; that the first line's clips/s then leaves the
    # compilation out is test_metrics_log's (on a set clock, not this machine's).
    assert re.search(r"compiling the train step\.\.\. [\d.]+ s", out)
    assert out.index("compiling the train step") < out.index("step 1/")
    stopped = int(err.split("preempted: saved step ")[1].split(";")[0])
    assert 4 <= stopped < 100000
    assert (workdir / "checkpoints" / str(stopped)).is_dir()  # saved although not due
    result = subprocess.run(
        [*args, f"--config.train.num_steps={stopped + 2}"], cwd=tmp_path, capture_output=True,
        text=True, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"trained to step {stopped + 2}" in result.stdout
    assert f"step {stopped + 2}/{stopped + 2}" in result.stdout
    assert "steps per epoch of 8 clips x 2 frames" in result.stdout  # the start-up plan
    assert f"start: resumed from {workdir}/checkpoints/{stopped}" in result.stdout
    assert any(p.name.startswith("events") for p in (workdir / "tensorboard").iterdir())
    trained_text = (workdir / "eval" / "results.json").read_text()
    trained = json.loads(trained_text)
    assert len(trained["cmc"]) == 5 and trained["written_by"] == "train.py"
    assert trained["step"] == stopped + 2
    last = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval/mAP"] == pytest.approx(trained["mAP"], abs=0.005)  # percent too

    # eval.py --workdir alone: the run's own config.json, its overrides included
    evaluated = subprocess.run(
        [sys.executable, "eval.py", "--workdir", str(workdir)], cwd=ROOT, capture_output=True,
        text=True, check=False, env=env,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"report: {workdir / 'eval' / f'step{stopped + 2}'}" in evaluated.stdout
    again = json.loads((workdir / "eval" / f"step{stopped + 2}" / "results.json").read_text())
    assert set(again) == set(trained) and again["written_by"] == "eval.py"
    for key in ("R1", "R5", "mAP", "mINP", "cmc", "num_queries", "dataset", "checkpoint"):
        assert again[key] == trained[key], key
    assert (workdir / "eval" / "results.json").read_text() == trained_text  # not overwritten
    # A workdir without config.json: what eval.py loads, in process (how eval.py prints a
    # UserError as one line is the same `cli.run_or_explain` as train.py's, whose lines
    # tests/test_config_errors.py reads).
    with pytest.raises(ConfigError, match=r"^no config\.json in .*nowhere: not a training"):
        run_config.load_run_config(str(tmp_path / "nowhere"))

    # eval.py --config on that checkpoint: the table, results.json and the three pictures
    out = tmp_path / "report"
    args = [
        sys.executable, "eval.py", "--config", "configs/synthetic.py:smoke",
        "--workdir", str(workdir), data,
    ]  # fmt: skip
    result = subprocess.run(
        [*args, "--output", str(out), "--save_features"], cwd=ROOT, capture_output=True,
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
        # rows trace back to the data: split row, first frame, length, source name
        assert saved["query_source"].shape == (numbers["num_queries"],)
        assert saved["query_source"][0].endswith("_000.jpg")  # a synthetic frame name
        np.testing.assert_array_equal(saved["query_index"], np.arange(numbers["num_queries"]))
        assert (saved["gallery_num_frames"] >= 1).all()
    # the report of the final evaluation of train.py agrees with eval.py
    assert trained["mAP"] == numbers["mAP"]
    # Refusals before anything is evaluated, through the call eval.py makes (its one-line
    # errors: tests/test_config_errors.py): a checkpoint of another model, no checkpoint.
    config = synthetic_config(tmp_path, **{"mesh.data": -1})
    with config.unlocked():
        config.model.dsanet.loss_w = False
    with pytest.raises(UserError) as caught:
        eval_lib.evaluate_workdir(config, str(workdir), output=str(tmp_path / "other"))
    assert "was written by a different model" in str(caught.value)
    assert "unexpected fwg_classifier/" in str(caught.value)
    with pytest.raises(UserError, match="nothing to evaluate; train first"):
        eval_lib.evaluate_workdir(synthetic_config(tmp_path), str(tmp_path / "empty"))


@pytest.mark.slow
def test_two_process_run_equals_one_process(tmp_path_factory, tmp_path):
    """A real 2-process jax.distributed run (gloo CPU collectives on 127.0.0.1, 2 devices
    per process: the shared run of tests/two_processes.py, the C2D baseline, SGD at lr 0.1)
    has after its first step the parameters of the 1-process run on 1 device, within
    `CROSS_LAYOUT_ATOL`; process 0 alone prints progress.

    Measured for this model (2026-12-08): 3.6e-7 at most between the layouts, where a
    wiring error (a clip duplicated in the batch, one step on 1 device) moves parameters
    by up to 0.055, 11x the bound. (For DSANet, the 8-device test's model: 1.9e-4 against
    4 devices in one process, 1.76 for the same wiring error.) Over several steps early
    training amplifies rounding, so the first step is compared.
    """
    shared = uninterrupted_run(tmp_path_factory)
    outputs = [(shared / f"whole.out{rank}").read_text() for rank in (0, 1)]
    assert f"step 1/{TWO_PROCESS_STEPS}" in outputs[0] and "step 1/" not in outputs[1]
    assert f"trained to step {TWO_PROCESS_STEPS}" in outputs[1]
    overrides = {**RUN, "train.num_steps": 1, "train.eval_every": -1}
    config = synthetic_config(shared, **overrides)  # the shared run's data
    single = tmp_path / "single"
    train_lib.train_and_evaluate(config, str(single))
    step_a, a = variables_of(single, config)
    step_b, b = variables_of(shared / "whole", config, step=1)
    assert step_a == step_b == 1
    assert a.keys() == b.keys()
    for key, value in a.items():
        np.testing.assert_allclose(b[key], value, rtol=0, atol=CROSS_LAYOUT_ATOL, err_msg=key)


@pytest.mark.slow
def test_fine_tuning_from_another_run_with_frozen_layers(dsanet_run, tmp_path, capsys):
    """config.init.checkpoint starts from another run's variables (fresh step and
    optimizer), re-initialising the classifier when the identity count differs;
    config.optim.freeze keeps the named parameters exactly as loaded."""
    source = dsanet_run.workdir
    last = dsanet_run.config.train.num_steps
    _, pretrained = variables_of(source, dsanet_run.config)
    config = synthetic_config(
        tmp_path,
        **{"train.eval_every": -1, "train.num_steps": 1, "optim.freeze": ("backbone/conv1",)},
    )
    with config.unlocked():
        config.dataset.synthetic_ids = 12  # 6 training identities instead of 8
        config.init.checkpoint = str(source)
    tuned_dir = tmp_path / "tuned"
    state = train_lib.train_and_evaluate(config, str(tuned_dir))
    assert int(state.step) == 1  # a fresh step count
    start = capsys.readouterr().out
    assert f"fine-tuning from {source}/checkpoints/{last}:" in start and "kept at init" in start
    _, tuned = variables_of(tuned_dir, config)
    classifier = [k for k in tuned if k.startswith("params/classifier")]
    assert classifier and all(tuned[k].shape != pretrained[k].shape for k in classifier)
    frozen = [k for k in tuned if k.startswith("params/backbone/conv1")]
    assert frozen
    for key in frozen:  # exactly as loaded
        np.testing.assert_array_equal(tuned[key], pretrained[key])
    trained = [k for k in tuned if k.startswith("params/backbone/layer1")]
    assert any(not np.array_equal(tuned[k], pretrained[k]) for k in trained)  # they moved
    with config.unlocked():
        config.optim.freeze = ("backbone/nothing",)
    with pytest.raises(ConfigError, match="name no parameter"):
        train_lib.train_and_evaluate(config, str(tmp_path / "bad"))
