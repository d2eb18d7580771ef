"""The evaluator shared by `train.py` (periodic evaluation) and `eval.py`.

Every query and gallery tracklet is cut into dense clips of T frames (SPEC §5); a jitted
step runs the model on a fixed-shape batch of clips, sharded over the data mesh, and adds
each clip's test feature into its tracklet's sum on the device, weighted by the clip's
number of real frames (a loop-padded last clip with 1 real frame counts 1/T of a full
one; padding clips count 0). Nothing leaves the device until every batch has run. The
tracklet feature is the weighted mean, L2-normalised (the model's test feature rule:
post-BN f_ID for DSANet and the BNNeck feature for the baseline/STRF). Distances and the
SPEC §6 metrics follow on the device / host in chunks (`reidjax.metrics`).

MARS lists every query tracklet in the gallery too: each distinct tracklet is run once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from input_pipeline.records import IngestedDataset, TrackletIndex
from reidjax import metrics, sharding
from reidjax.models.factory import dsanet_config

PROGRESS_SECONDS = 10.0


def test_feature_key(config: ml_collections.ConfigDict) -> str:
    """The model output averaged into the tracklet feature (before L2 normalisation)."""
    return dsanet_config(config).test_feature if config.model.name == "dsanet" else "bn_features"


def accumulate(
    sums: jax.Array, weights: jax.Array, features: jax.Array, tracklet: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Adds clip `features` `[B, D]` into per-tracklet `sums` `[N, D]` and `weights` `[N]`,
    weighted by the clip's real frames (`mask` `[B, T]`); `tracklet` -1 marks padding."""
    w = jnp.where(tracklet >= 0, jnp.sum(mask, axis=1), 0).astype(jnp.float32)
    index = jnp.maximum(tracklet, 0)
    sums = sums.at[index].add(features.astype(jnp.float32) * w[:, None])
    return sums, weights.at[index].add(w)


def tracklet_means(sums: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted clip means `[N, D]`, L2-normalised."""
    mean = sums / jnp.maximum(weights, 1e-12)[:, None]
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass
class EvalResult:
    """Metrics and everything the pictures and `--save-features` need (host arrays)."""

    metrics: dict
    query_features: np.ndarray
    gallery_features: np.ndarray
    query: TrackletIndex
    gallery: TrackletIndex
    distances: np.ndarray | None = None  # [Q, G] (after re-ranking, when on); None if large

    def table_row(self) -> dict[str, float]:
        cmc = self.metrics["cmc"]
        row = {f"R{k}": float(cmc[k - 1]) for k in (1, 5, 10, 20) if k <= len(cmc)}
        row.update(mAP=self.metrics["mAP"], mINP=self.metrics["mINP"])
        return row


def unique_tracklets(query: TrackletIndex, gallery: TrackletIndex):
    """The distinct tracklets of query ∪ gallery and where each query / gallery item is."""
    first = np.concatenate([query.first, gallery.first]).astype(np.int64)
    count = np.concatenate([query.count, gallery.count]).astype(np.int64)
    pid = np.concatenate([query.pid, gallery.pid])
    camid = np.concatenate([query.camid, gallery.camid])
    keys = first * (1 << 32) + count
    _, keep, inverse = np.unique(keys, return_index=True, return_inverse=True)
    union = TrackletIndex(pid[keep], camid[keep], first[keep], count[keep])
    return union, inverse[: len(query)], inverse[len(query) :]


class Evaluator:
    """Tracklet features and retrieval metrics of a model on an ingested dataset.

    Args:
        model: the Flax model; `variables` are passed per call (train state or checkpoint).
        config: `config.input` (T, frame size), `config.eval` (batch, distance, re-ranking).
        data: the ingested dataset (its `query` and `gallery` splits).
        mesh: the data mesh; `config.eval.batch_size` must be a multiple of its size.
        progress: called with a progress line (process 0); None for silence.
    """

    def __init__(
        self,
        model: nn.Module,
        config: ml_collections.ConfigDict,
        data: IngestedDataset,
        mesh: jax.sharding.Mesh,
        progress: Callable[[str], None] | None = print,
    ):
        from reidjax.train_lib import normalize

        self.config, self.data, self.mesh = config, data, mesh
        self.progress = progress if jax.process_index() == 0 else None
        batch = config.eval.batch_size
        devices, hosts = mesh.shape["data"], jax.process_count()
        if batch % devices or batch % hosts:
            raise ValueError(
                f"config.eval.batch_size={batch} is not divisible by the {devices} devices "
                f"(and {hosts} processes) of the data mesh; set --config.eval.batch_size to a "
                "multiple of it"
            )
        for split in ("query", "gallery"):
            if len(data.splits[split]) == 0:
                raise metrics.EvaluationError(
                    f"the {split} split of {data.directory} is empty: nothing to evaluate"
                )
        key = test_feature_key(config)
        self.repl, self.batch_sharding = sharding.replicated(mesh), sharding.data_sharded(mesh)

        def step(sums, weights, variables, batch):
            out = model.apply(variables, normalize(batch["clips"]), train=False)
            return accumulate(sums, weights, out[key], batch["tracklet"], batch["frame_mask"])

        self.step = jax.jit(
            step,
            in_shardings=(self.repl, self.repl, self.repl, self.batch_sharding),
            out_shardings=(self.repl, self.repl),
            donate_argnums=(0, 1),
        )
        self.model, self.key, self.dim = model, key, None
        self.union, self.q_pos, self.g_pos = unique_tracklets(
            data.splits["query"], data.splits["gallery"]
        )

    def features(self, variables: dict, index: TrackletIndex, label: str = "eval") -> np.ndarray:
        """L2-normalised tracklet features `[N, D]` of the tracklets of `index`."""
        import grain

        from input_pipeline.pipelines import EvalBatches

        c = self.config
        hosts = jax.process_count()
        batches = EvalBatches(
            self.data, index, c.input.num_frames, c.eval.batch_size // hosts,
            jax.process_index(), hosts,
        )  # fmt: skip
        if self.dim is None:  # the feature size, from shapes only (traced once)
            x = jax.ShapeDtypeStruct(
                (1, c.input.num_frames, c.input.height, c.input.width, 3), jnp.float32
            )
            out = jax.eval_shape(lambda v, x: self.model.apply(v, x)[self.key], variables, x)
            self.dim = out.shape[-1]
        sums = jax.device_put(jnp.zeros((len(index), self.dim), jnp.float32), self.repl)
        weights = jax.device_put(jnp.zeros((len(index),), jnp.float32), self.repl)
        stream = (
            grain.MapDataset.range(len(batches))
            .map(batches)
            .to_iter_dataset(grain.ReadOptions(num_threads=c.eval.data_threads))
        )
        frames_per_batch = c.eval.batch_size * c.input.num_frames
        start = last = time.perf_counter()
        for i, local in enumerate(stream):
            local = {k: local[k] for k in ("clips", "tracklet", "frame_mask")}
            batch = sharding.global_batch_array(local, self.batch_sharding)
            sums, weights = self.step(sums, weights, variables, batch)
            now = time.perf_counter()
            if self.progress and (now - last > PROGRESS_SECONDS or i + 1 == len(batches)):
                jax.block_until_ready(sums)
                now, last = time.perf_counter(), time.perf_counter()
                rate = (i + 1) * frames_per_batch / (now - start)
                self.progress(
                    f"{label}: {i + 1}/{len(batches)} batches, {len(index)} tracklets, "
                    f"{rate:,.0f} frames/s"
                )
        return np.asarray(jax.device_get(tracklet_means(sums, weights)))

    def evaluate(self, variables: dict, rerank: bool | None = None) -> EvalResult:
        """Features of every query and gallery tracklet, distances and the SPEC §6 metrics.

        Raises:
            metrics.EvaluationError: no query has a match in the gallery.
        """
        c = self.config.eval
        rerank = c.rerank if rerank is None else rerank
        feats = self.features(variables, self.union, "eval")
        query, gallery = self.data.splits["query"], self.data.splits["gallery"]
        qf, gf = feats[self.q_pos], feats[self.g_pos]
        args = (query.pid, gallery.pid, query.camid, gallery.camid)
        dist = None
        if rerank:
            t0 = time.perf_counter()
            dist = metrics.re_ranking(
                metrics.pairwise_distances(qf, gf, c.distance),
                metrics.pairwise_distances(qf, qf, c.distance),
                metrics.pairwise_distances(gf, gf, c.distance),
                c.rerank_k1, c.rerank_k2, c.rerank_lambda,
            )  # fmt: skip
            logging.info("re-ranking took %.1f s", time.perf_counter() - t0)
            result = metrics.evaluate_rank(dist, *args, max_rank=c.max_rank)
        elif len(qf) * len(gf) <= 1 << 26:  # small: keep the matrix for the pictures
            dist = metrics.pairwise_distances(qf, gf, c.distance)
            result = metrics.evaluate_rank(dist, *args, max_rank=c.max_rank)
        else:  # large: chunked, the matrix is never formed
            result = metrics.evaluate_features(qf, gf, *args, c.distance, c.max_rank)
        return EvalResult(result, qf, gf, query, gallery, dist)


def restore_variables(
    config: ml_collections.ConfigDict,
    variables: dict,
    checkpoint_dir: str,
    mesh: jax.sharding.Mesh,
    step: int | None = None,
) -> tuple[dict, int]:
    """The parameters and BN statistics of a train-state checkpoint, replicated on `mesh`.

    `variables` (the model's initial variables) give the expected names and shapes; the
    optimizer state is restored from its abstract shapes only (`jax.eval_shape`).

    Raises:
        FileNotFoundError: no checkpoint (with the train command to run).
        checkpoint.CheckpointMismatchError: the checkpoint belongs to another model.
    """
    from reidjax import checkpoint
    from reidjax.optim import build_optimizer
    from reidjax.train_lib import create_train_state

    tx, _ = build_optimizer(config.optim, 1, max(config.train.epochs, 1))
    repl = sharding.replicated(mesh)
    abstract = jax.eval_shape(lambda v: create_train_state(v, tx, repl), variables)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), abstract
    )
    hint = "nothing to evaluate; train first with python train.py --config CONFIG --workdir DIR"
    state = checkpoint.restore_checked(checkpoint_dir, abstract, step, what=hint)
    return {"params": state.params, "batch_stats": state.batch_stats}, int(state.step)


def results_json(result: EvalResult, step: int | None, extra: dict | None = None) -> dict:
    """The numbers of `results.json`: R1/5/10/20, mAP, mINP (percent), counts, step."""
    m = result.metrics
    out = {k: round(100 * v, 2) for k, v in result.table_row().items()}
    out.update(
        cmc=[round(100 * float(v), 2) for v in m["cmc"]],
        num_queries=m["num_queries"],
        num_valid_queries=m["num_valid_queries"],
        num_gallery=len(result.gallery),
        step=step,
    )
    out.update(extra or {})
    return out


def format_table(rows: dict[str, dict]) -> str:
    """A fixed-width table of `name -> results_json(...)` rows."""
    cols = ("R1", "R5", "R10", "R20", "mAP", "mINP")
    width = max(8, *(len(n) for n in rows))
    lines = [f"{'':{width}s} " + " ".join(f"{c:>6s}" for c in cols)]
    for name, r in rows.items():
        lines.append(
            f"{name:{width}s} " + " ".join(f"{r[c]:6.2f}" if c in r else f"{'-':>6s}" for c in cols)
        )
    return "\n".join(lines)


def attention_maps(
    model: nn.Module,
    variables: dict,
    data: IngestedDataset,
    config: ml_collections.ConfigDict,
    count: int = 3,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first clip of `count` query tracklets and DSANet's maps on them (paper Fig. 6):
    F_ID and F_cam channel means and the TLM attention, each `[B, T, h, w]`."""
    from input_pipeline.sampling import dense_clips
    from reidjax.train_lib import normalize

    query = data.splits["query"]
    picks = np.linspace(0, len(query) - 1, min(count, len(query))).round().astype(int)
    clips = []
    for i in picks:
        idx, _ = dense_clips(int(query.count[i]), config.input.num_frames)
        clips.append(data.frames(int(query.first[i]) + idx[0]))
    clips = np.stack(clips)
    out = jax.jit(lambda v, x: model.apply(v, normalize(x), train=False))(
        jax.device_get(variables), clips
    )
    names = {"fid_activation": "F_ID", "fcam_activation": "F_cam", "tlm_attention": "TLM"}
    maps = {label: np.asarray(out[k]) for k, label in names.items() if k in out}
    return clips, maps


def write_report(
    result: EvalResult,
    out_dir: str,
    data: IngestedDataset,
    step: int | None,
    title: str,
    model: nn.Module | None = None,
    variables: dict | None = None,
    config: ml_collections.ConfigDict | None = None,
    extra: dict | None = None,
) -> dict:
    """Writes `results.json`, `cmc.png`, `retrieval.png` and, for DSANet, `attention.png`
    into `out_dir` (process 0 only); returns the results."""
    from reidjax import visualize

    numbers = results_json(result, step, extra)
    if jax.process_index() != 0:
        return numbers
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json.tmp"), "w") as f:
        json.dump(numbers, f, indent=1)
    os.replace(os.path.join(out_dir, "results.json.tmp"), os.path.join(out_dir, "results.json"))
    visualize.plot_cmc({title: result.metrics["cmc"]}, os.path.join(out_dir, "cmc.png"))
    if result.distances is not None:
        visualize.retrieval_grid(result, data, os.path.join(out_dir, "retrieval.png"))
    if model is not None and config is not None and config.model.name == "dsanet":
        clips, maps = attention_maps(model, variables, data, config)
        visualize.attention_figure(clips, maps, os.path.join(out_dir, "attention.png"))
    return numbers


def evaluate_workdir(
    config: ml_collections.ConfigDict,
    workdir: str,
    step: int | None = None,
    best: bool = False,
    init: bool = False,
    rerank: bool | None = None,
    save_features: bool = False,
    output: str | None = None,
) -> dict:
    """eval.py on one workdir: restore, evaluate, print the table, write the report.

    Args:
        step: the checkpoint step (default: latest); `best`: the best-mAP checkpoint that
            training keeps in `workdir/checkpoints_best`; `init`: the initial weights (no
            checkpoint: the untrained or ImageNet-initialised model, a baseline).
        output: report folder (default `workdir/eval`).

    Returns:
        The numbers written to `results.json`.
    """
    from reidjax import train_lib

    if not init and config.init.imagenet:  # the checkpoint replaces them: do not load
        config = config.copy_and_resolve_references()
        with config.unlocked():
            config.init.imagenet = ""
    data = train_lib.open_dataset(config)
    train_lib.resolve_sizes(config, data)
    mesh = sharding.make_mesh(config)
    model, variables, _ = train_lib.init_variables(config, jax.random.key(config.seed))
    if init:
        restored_step = 0
        variables = jax.device_put(variables, sharding.replicated(mesh))
    else:
        folder = "checkpoints_best" if best else "checkpoints"
        variables, restored_step = restore_variables(
            config, variables, os.path.join(workdir, folder), mesh, step
        )
    evaluator = Evaluator(model, config, data, mesh)
    result = evaluator.evaluate(variables, rerank)
    output = output or os.path.join(workdir, "eval")
    label = f"{config.model.name} step {restored_step}" + (" +rerank" if rerank else "")
    extra = {
        "dataset": data.manifest.get("name", config.dataset.name),
        "checkpoint": "init" if init else ("best" if best else "latest" if step is None else step),
        "reranked": bool(config.eval.rerank if rerank is None else rerank),
        "distance": config.eval.distance,
    }
    numbers = write_report(result, output, data, restored_step, label, model, variables,
                           config, extra)  # fmt: skip
    if save_features and jax.process_index() == 0:
        np.savez(
            os.path.join(output, "features.npz"),
            query_features=result.query_features, gallery_features=result.gallery_features,
            query_pids=result.query.pid, gallery_pids=result.gallery.pid,
            query_camids=result.query.camid, gallery_camids=result.gallery.camid,
        )  # fmt: skip
    return numbers
