"""The evaluator: mask-aware clip averaging, features against a per-clip loop, errors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from input_pipeline.errors import DatasetError
from input_pipeline.pipelines import eval_clips
from input_pipeline.records import TrackletIndex
from input_pipeline.sampling import rrs_test_indices
from reidjax import experiment
from reidjax.config import config_checks
from reidjax.config.config_lib import load_config
from reidjax.errors import ConfigError
from reidjax.evaluation import evaluator, features, metrics
from reidjax.models.factory import normalize
from reidjax.runtime import sharding
from reidjax.training.state import init_variables


@pytest.mark.parametrize("clip_len", [2, 4])
def test_mask_aware_averaging_equals_per_tracklet_frame_loop(rng, clip_len):
    """Clip features that are means over their real frames, averaged with the evaluator's
    weights, give each tracklet's mean over its frames, for lengths 1..3T+1."""
    lengths = np.arange(1, 3 * clip_len + 2)
    index = TrackletIndex(
        pid=np.zeros(len(lengths)), camid=np.zeros(len(lengths)),
        first=np.concatenate([[0], np.cumsum(lengths)[:-1]]), count=lengths,
    )  # fmt: skip
    frame_features = [rng.normal(size=(n, 5)).astype(np.float32) for n in lengths]
    clips = eval_clips(None, index, clip_len)
    feats = np.stack(
        [
            frame_features[t][f[m]].mean(0)
            for t, f, m in zip(clips.tracklet, clips.frames, clips.mask, strict=True)
        ]
    )
    # two fixed-shape batches with padding clips (tracklet -1), as EvalBatches makes them
    batch = 16
    total = -(-len(feats) // batch) * batch
    pad = total - len(feats)
    feats = np.concatenate([feats, rng.normal(size=(pad, 5)).astype(np.float32)])
    tracklet = np.concatenate([clips.tracklet, -np.ones(pad, int)]).astype(np.int32)
    mask = np.concatenate([clips.mask, np.zeros((pad, clip_len), bool)])
    sums, weights = jnp.zeros((len(lengths), 5)), jnp.zeros(len(lengths))
    for s in range(0, total, batch):
        sums, weights = features.accumulate(
            sums, weights, feats[s : s + batch], tracklet[s : s + batch], mask[s : s + batch]
        )
    got = np.asarray(features.tracklet_means(sums, weights))
    for t, frames in enumerate(frame_features):
        mean = frames.mean(0)  # the per-tracklet loop over frames
        np.testing.assert_allclose(got[t], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(weights), lengths)


def test_clip_weights_clips_is_tclnet_mean(rng):
    """`eval.clip_weights="clips"`: each clip counts once (TCLNet's `feat.mean(1)` over its
    clips), however many real frames it has; padding clips count 0."""
    lengths = np.array([1, 4, 5, 9])
    index = TrackletIndex(
        pid=np.zeros(4), camid=np.zeros(4),
        first=np.concatenate([[0], np.cumsum(lengths)[:-1]]), count=lengths,
    )  # fmt: skip
    clips = eval_clips(None, index, 4)
    feats = rng.normal(size=(len(clips.tracklet) + 2, 5)).astype(np.float32)
    tracklet = np.concatenate([clips.tracklet, [-1, -1]]).astype(np.int32)
    mask = np.concatenate([clips.mask, np.zeros((2, 4), bool)])
    sums, weights = features.accumulate(
        jnp.zeros((4, 5)), jnp.zeros(4), feats, tracklet, mask, by_frames=False
    )
    got = np.asarray(features.tracklet_means(sums, weights))
    for t in range(4):
        mean = feats[: len(clips.tracklet)][clips.tracklet == t].mean(0)
        np.testing.assert_allclose(got[t], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(weights), [1, 1, 2, 3])


@pytest.mark.parametrize("offset", [0.0, 500.0])
def test_frame_pooling_equals_a_softmax_over_every_real_frame(rng, offset):
    """`accumulate_frames` (DSANet's FWG over whole tracklets): per-frame features with
    log-weights, a tracklet's clips spread over three batches (two in one batch), padded
    frames and padding clips, give Σ exp(l)·f / Σ exp(l) over the tracklet's real frames
    (a float64 loop). Log-weights offset by 500 would overflow exp in float32 without the
    running maximum."""
    lengths = np.array([1, 3, 4, 7, 9])
    index = TrackletIndex(
        pid=np.zeros(5), camid=np.zeros(5),
        first=np.concatenate([[0], np.cumsum(lengths)[:-1]]), count=lengths,
    )  # fmt: skip
    clips = eval_clips(None, index, 4)
    n, pad = len(clips.tracklet), 3
    frame_f = rng.normal(size=(lengths.sum(), 6))
    frame_l = rng.normal(size=lengths.sum()) * 3 + offset
    feats = np.zeros((n + pad, 4, 6), np.float32)
    logw = np.full((n + pad, 4), 1e3, np.float32)  # padding: huge, must be ignored
    for c in range(n):
        frames = index.first[clips.tracklet[c]] + clips.frames[c]
        feats[c], logw[c] = frame_f[frames], frame_l[frames]
    tracklet = np.concatenate([clips.tracklet, -np.ones(pad, int)]).astype(np.int32)
    mask = np.concatenate([clips.mask, np.zeros((pad, 4), bool)])
    order = rng.permutation(n + pad)
    acc = (jnp.zeros((8, 6)), jnp.zeros(8), jnp.full(8, -jnp.inf))
    for part in np.array_split(order, 3):
        acc = features.accumulate_frames(*acc, feats[part], logw[part], tracklet[part], mask[part])
    got = np.asarray(features.tracklet_means(*acc[:2]))
    for t in range(5):
        rows = slice(index.first[t], index.first[t] + lengths[t])
        w = np.exp(frame_l[rows] - frame_l[rows].max())
        mean = (w[:, None] * frame_f[rows]).sum(0) / w.sum()
        np.testing.assert_allclose(got[t], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_array_equal(got[5:], 0)  # rows no tracklet uses


def smoke_config(tmp_path):
    config = load_config("synthetic", "smoke")
    with config.unlocked():
        config.dataset.data_dir = str(tmp_path / "data")
        config.dataset.synthetic_ids = 8
    return config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    config = smoke_config(tmp_path_factory.mktemp("eval"))
    run = experiment.setup(config, train=False)
    return config, run.data, run.model, init_variables(run.model, config)


@pytest.mark.parametrize("frame_pooling", [True, False], ids=["tracklet", "clip"])
def test_features_equal_a_per_clip_loop_on_8_devices(setup, frame_pooling):
    """The sharded, batched, padded evaluator (8 devices) equals running the model on each
    clip of each tracklet in a host loop, and the metrics equal the brute-force ranking.
    The smoke model is DSANet: with FWG over whole tracklets (the default) the loop pools
    every real frame's feature with softmax weights over the tracklet; with `clip` scope
    it averages the clips' f_ID weighted by real frames."""
    config, data, model, variables = setup
    assert model.frame_pooling
    model = dataclasses.replace(model, frame_pooling=frame_pooling)
    mesh = sharding.make_mesh(config)
    assert mesh.shape["data"] == 8
    ev = evaluator.Evaluator(model.predict, experiment.eval_spec(config), data, mesh, progress=None)
    result = ev.evaluate(jax.device_put(variables, sharding.replicated(mesh)))
    apply = jax.jit(lambda x: model.module.apply(variables, normalize(x)))
    for split, got in (("query", result.query_features), ("gallery", result.gallery_features)):
        index = data.splits[split]
        clips = eval_clips(data, split, config.input.num_frames)
        for t in range(len(index)):
            feats, logw = [], []
            total = 0
            for c in np.flatnonzero(clips.tracklet == t):
                out = apply(data.frames(index.first[t] + clips.frames[c])[None])
                real = clips.mask[c]
                feats.append(np.asarray(out["frame_test_features"])[0][real])
                logw.append(np.asarray(out["frame_log_weights"])[0][real])
                total = total + real.sum() * np.asarray(out[model.test_feature])[0]
            if frame_pooling:
                logw = np.concatenate(logw).astype(np.float64)
                w = np.exp(logw - logw.max())
                total = (w[:, None] * np.concatenate(feats)).sum(0) / w.sum()
            expected = total / np.linalg.norm(total)
            np.testing.assert_allclose(got[t], expected, atol=2e-5, err_msg=f"{split} {t}")
    dist = 1 - result.query_features @ result.gallery_features.T
    q, g = data.splits["query"], data.splits["gallery"]
    reference = metrics.evaluate_rank(dist, q.pid, g.pid, q.camid, g.camid)
    assert result.metrics["mAP"] == pytest.approx(reference["mAP"], abs=1e-6)
    np.testing.assert_allclose(result.distances, dist, atol=1e-5)


def test_rrs_protocol_runs_one_clip_per_tracklet(setup):
    """test_sampler=rrs (DSANet Table 2): each tracklet's feature is the model on its one
    restricted-random-sampling clip, L2-normalised; an unknown sampler is a clear error."""
    config, data, model, variables = setup
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.input.test_sampler = "rrs"
    mesh = sharding.make_mesh(config)
    ev = evaluator.Evaluator(model.predict, experiment.eval_spec(config), data, mesh, progress=None)
    index = data.splits["query"]
    got = ev.extract(jax.device_put(variables, sharding.replicated(mesh)), data, index)
    apply = jax.jit(lambda x: model.module.apply(variables, normalize(x))[model.test_feature])
    T = config.input.num_frames
    for t in range(len(index)):
        clip = data.frames(index.first[t] + rrs_test_indices(int(index.count[t]), T))
        expected = np.asarray(apply(clip[None]))[0]
        np.testing.assert_allclose(got[t], expected / np.linalg.norm(expected), atol=2e-5)
    with config.unlocked():
        config.input.test_sampler = "middle"
    with pytest.raises(
        ConfigError, match=r"test_sampler='middle' is not one of \['dense', 'rrs'\]"
    ):
        config_checks.validate(config)


def test_clear_errors(setup):
    config, data, model, variables = setup
    mesh = sharding.make_mesh(config)
    with config.unlocked():
        config.eval.batch_size = 6
    with pytest.raises(ValueError, match=r"eval\.batch_size=6 is not divisible by the 8 devices"):
        evaluator.Evaluator(model.predict, experiment.eval_spec(config), data, mesh)
    with config.unlocked():
        config.eval.batch_size = 8

    class Without:
        def __init__(self, split, change):
            self.directory, self.size = data.directory, data.size
            self.splits = dict(data.splits)
            self.splits[split] = change(data.splits[split])
            self.frame, self.frames, self.read_into = data.frame, data.frames, data.read_into

    def empty(index):
        return TrackletIndex(*(a[:0] for a in dataclasses.astuple(index)))

    with pytest.raises(metrics.EvaluationError, match=r"query split .* is empty"):
        evaluator.Evaluator(
            model.predict, experiment.eval_spec(config), Without("query", empty), mesh
        )

    def strangers(index):
        return dataclasses.replace(index, pid=index.pid + 1000)

    ev = evaluator.Evaluator(
        model.predict,
        experiment.eval_spec(config),
        Without("gallery", strangers),
        mesh,
        progress=None,
    )
    with pytest.raises(metrics.EvaluationError, match="has a match in the gallery"):
        ev.evaluate(jax.device_put(variables, sharding.replicated(mesh)))


def test_cross_dataset_eval_runs_every_split_and_the_mean(monkeypatch, tmp_path):
    """`evaluate_across` on a dataset with ten train/test splits: each split's test half
    with the run's model config (sizes kept), dataset.split set, its own report folder,
    training splits not cut; the mean of the ten in results.json."""
    from reidjax.evaluation import eval_lib

    calls = []

    def fake(config, workdir, output=None, trained_on=None, **kwargs):
        calls.append((config.dataset.name, config.dataset.split, config.dataset.dense_train,
                      config.model.num_classes, output, trained_on))  # fmt: skip
        return {k: float(config.dataset.split) for k in eval_lib.report.TABLE_COLUMNS}

    monkeypatch.setattr(eval_lib, "evaluate_workdir", fake)
    config = load_config("strf_dukev")
    with config.unlocked():
        config.model.num_classes = 702
    rows = eval_lib.evaluate_across(config, str(tmp_path / "dukerun"), "ilidsvid")
    assert [c[1] for c in calls] == list(range(10))
    assert all(c[0] == "ilidsvid" and not c[2] and c[3] == 702 for c in calls)
    assert all(c[5] == "dukev" for c in calls)
    assert calls[3][4] == str(tmp_path / "dukerun" / "eval" / "on_ilidsvid" / "split3")
    assert rows["dukerun on ilidsvid (mean)"]["mAP"] == pytest.approx(4.5)
    saved = json.loads((tmp_path / "dukerun" / "eval" / "on_ilidsvid" / "results.json").read_text())
    assert saved["mean"]["R1"] == pytest.approx(4.5) and len(saved["splits"]) == 10
    with pytest.raises(DatasetError, match=r"Unknown dataset 'nope'; valid: \["):
        eval_lib.evaluate_across(config, str(tmp_path / "dukerun"), "nope")
