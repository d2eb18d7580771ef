"""Every config in configs/, checked without training it: by shape at full size and at
`:smoke`, and its data path on a fixture of its dataset in the native layout (built by the
dataset's tensorflow-datasets builder at the smoke frame size, read by the training
pipeline). One train step per model family is lowered for GPU and TPU, and one smoke run
per family trains and evaluates end to end (`dsanet_run`, `baseline_run`, `strf_run`,
shared with the tests that read a run)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from input_pipeline.batch import TRAIN_FIELDS
from reidjax import experiment
from reidjax.config.config_lib import load_config
from reidjax.data_setup import registry_meta
from reidjax.models.factory import dummy_clips
from reidjax.training import checkpoint, train_lib
from reidjax.training.optim import build_optimizer
from reidjax.training.state import state_of
from tests import fixtures

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_inits_by_shape_and_reads_its_data(name, tmp_path):
    """Full size and `:smoke`: the model's variables by `jax.eval_shape` (a classifier per
    training identity of the benchmark, DSANet's camera classifier per camera); at smoke
    size, the set-up of a training run on the dataset's fixture (mesh, data, plan,
    optimizer, abstract state) and its first batch, with the fields and shapes the train
    step is compiled for."""
    for variant in (None, "smoke"):
        config = load_config(name, variant)
        meta = registry_meta(config)
        model = experiment.build(config, meta)
        shapes = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(config))
        params = traverse_util.flatten_dict(shapes["params"], sep="/")
        if config.model.name == "dsanet":
            assert params["classifier/kernel"].shape[-1] == meta.num_train_ids, name
            assert params["cam_classifier/kernel"].shape[-1] == meta.num_cameras, name
        else:
            assert params["head/classifier/kernel"].shape[-1] == meta.num_train_ids, name
    with config.unlocked():
        if config.dataset.name == "synthetic":
            config.dataset.data_dir = str(tmp_path / "data")
        else:
            config.dataset.data_dir = fixtures.prepare(config, tmp_path / "tfds")
    run = experiment.setup(config)
    batch = run.batches(0)
    b = config.train.ids_per_batch * config.train.clips_per_id
    assert tuple(batch) == TRAIN_FIELDS
    t, h, w = config.input.num_frames, config.input.height, config.input.width
    assert batch["clips"].shape == (b, t, h, w, 3) and batch["clips"].dtype == np.uint8
    assert len(np.unique(batch["labels"])) == config.train.ids_per_batch
    assert (batch["labels"] < run.meta.num_train_ids).all()
    # The train state holds the parameters the smoke model was traced with above (the
    # fixture's identity count changes the classifier's width, not the tree).
    assert jax.tree.structure(run.abstract_state.params) == jax.tree.structure(shapes["params"])


@pytest.mark.parametrize("name", ["c2d_mars", "strf_mars", "dsanet_lsvid"])
def test_train_and_eval_steps_lower_for_gpu_and_tpu(name):
    """Per model family (baseline, STRF, DSANet): the real train step (forward, every loss,
    backward, optimizer, divergence guard) and the eval feature function of the smoke
    config export for CUDA and TPU from this CPU-only machine, with the strided
    convolutions accelerators use (`native`)."""
    config = load_config(name, "smoke")
    with config.unlocked():
        config.model.strided_conv = "native"
    model = experiment.build(config, registry_meta(config))
    tx, schedule = build_optimizer(experiment.optim_spec(config), 10, config.train.epochs)
    state = jax.eval_shape(lambda: state_of(model.init(jax.random.key(0), dummy_clips(config)), tx))
    b = config.train.ids_per_batch * config.train.clips_per_id
    clips = (b, config.input.num_frames, config.input.height, config.input.width, 3)
    batch = {
        "clips": jax.ShapeDtypeStruct(clips, jnp.uint8),
        "flip": jax.ShapeDtypeStruct((b,), jnp.bool_),
        "erase": jax.ShapeDtypeStruct((b, 4), jnp.int32),
        "labels": jax.ShapeDtypeStruct((b,), jnp.int32),
        "cameras": jax.ShapeDtypeStruct((b,), jnp.int32),
    }
    assert tuple(batch) == TRAIN_FIELDS
    key = jax.eval_shape(lambda: jax.random.key(0))
    step = jax.jit(train_lib.make_train_step(model, tx, schedule))
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    for platform in ("cuda", "tpu"):
        train = jax.export.export(step, platforms=(platform,))(state, batch, key)
        assert train.platforms == (platform,) and "stablehlo" in train.mlir_module()
        predict = jax.export.export(jax.jit(model.predict), platforms=(platform,))(
            variables, batch["clips"]
        )
        assert predict.out_avals[0].shape[0] == b
    assert jax.default_backend() == "cpu"  # lowered for GPU/TPU on a machine without them


@pytest.mark.slow
@pytest.mark.parametrize("family", ["baseline_run", "strf_run", "dsanet_run"])
def test_one_smoke_run_per_family_trains_and_evaluates(family, request):
    """The shared run of each family: trained to its last step with a finite state
    (parameters, statistics, optimizer state), evaluated (results.json, the retrieval
    picture)."""
    run = request.getfixturevalue(family)
    config = run.config
    abstract = experiment.setup(config).abstract_state
    state = checkpoint.restore_checked(str(run.workdir / "checkpoints"), abstract)
    assert int(state.step) == config.train.num_steps
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state)))
    results = json.loads((run.workdir / "eval" / "results.json").read_text())
    assert 0 <= results["mAP"] <= 100 and results["step"] == config.train.num_steps
    assert (run.workdir / "eval" / "retrieval.png").stat().st_size > 0
