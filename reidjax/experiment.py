"""From a config to a run: one set-up that every entry point stands on.

How a run flows:

    config (checked when loaded: reidjax.config.config_checks)
      └─ setup(config) ──> Run, a frozen value:
           mesh                    devices on the ("data",) axis; batches checked against it
           data, meta              the prepared dataset; what it tells the model (ids, cameras)
           model                   ReIDModel: Flax module + objective + test feature
           batches, plan           training batches (pure in (seed, step)); steps, decays
           tx, schedule            optimizer and learning-rate schedule (epochs of the sampler)
           abstract_state          shapes and shardings only (jax.eval_shape)
      └─ restore.restore_or_init   workdir checkpoint → config.resume → init.checkpoint →
                                   ImageNet → scratch
      └─ train_lib.train(run, workdir)   the loop; eval_lib / evaluator for the test protocol

`setup(config, train=False)` is the evaluation's subset (no batches, optimizer or plan).
train.py, eval.py, inference, tools/, bench/ and the tests all call it; nothing else weaves
the set-up. The config is never mutated: what the data decides travels in `DataMeta`, and
`resolved_config` gives the config as run (written to `WORKDIR/config.json`).
"""

from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

from input_pipeline.pipelines import TrainBatches, TrainSpec, worker_kind
from input_pipeline.records import ReIDDataset
from reidjax.data_setup import DataMeta, open_data, registry_meta
from reidjax.errors import ConfigError
from reidjax.evaluation.features import EvalSpec
from reidjax.models import ReIDModel, build_model
from reidjax.models.factory import dummy_clips
from reidjax.runtime import sharding, workdir_io
from reidjax.runtime.workdir import Workdir
from reidjax.training import hosts
from reidjax.training.optim import OptimSpec, build_optimizer, decay_steps
from reidjax.training.state import TrainState, abstract_state


def build(config: ml_collections.ConfigDict, meta: DataMeta) -> ReIDModel:
    """The model family of the config, sized by the data: module, objective, test feature.

    `config.model.num_classes` and `config.dataset.num_cameras` win when > 0.
    """
    return build_model(config, meta.num_train_ids, config.dataset.num_cameras or meta.num_cameras)


def build_module(config: ml_collections.ConfigDict) -> nn.Module:
    """The Flax module of a benchmark config, sized from the dataset registry."""
    return build(config, registry_meta(config)).module


def resolved_config(config: ml_collections.ConfigDict, meta: DataMeta) -> ml_collections.ConfigDict:
    """A copy of the config with the sizes the data decided filled in (`model.num_classes`,
    `dataset.num_cameras`): the config as run."""
    resolved = config.copy_and_resolve_references()
    with resolved.unlocked():
        resolved.model.num_classes = config.model.num_classes or meta.num_train_ids
        resolved.dataset.num_cameras = config.dataset.num_cameras or meta.num_cameras
    return resolved


def write_config(workdir: Workdir, config: ml_collections.ConfigDict, meta: DataMeta) -> None:
    """`WORKDIR/config.json`: the config as run (process 0; written atomically)."""
    if jax.process_index() == 0:
        workdir_io.write_text(workdir.config, resolved_config(config, meta).to_json(indent=2))


# Keys a resumed run may change: where things are and how they are run, not what is
# trained (train.num_steps only moves the stop; the schedule follows train.epochs).
# `init.*` and `resume` only choose a fresh run's start; a workdir's checkpoint wins.
MAY_CHANGE_ON_RESUME = (
    "dataset.data_dir", "eval.", "init.", "input.workers", "input.worker_kind", "mesh.",
    "model.remat", "model.dsanet.fwg_scope", "resume", "train.checkpoint_every",
    "train.eval_every", "train.keep_checkpoints", "train.log_every", "train.num_steps",
    "train.profile_steps",
)  # fmt: skip


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def check_resume(
    workdir: Workdir, config: ml_collections.ConfigDict, meta: DataMeta, step: int
) -> None:
    """A resume must train what the run trained: the config as run now against the
    workdir's `config.json`, every key but `MAY_CHANGE_ON_RESUME`.

    Raises:
        ConfigError: values differ (the message names them and how to start a new run
            from the checkpoint instead), or config.json cannot be read.
    """
    path = workdir.config
    if not workdir_io.exists(path):
        return
    try:
        saved = _flat(json.loads(workdir_io.read_text(path)))
    except (ValueError, AttributeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path} is damaged ({type(e).__name__}); it records the config of the checkpoints "
            "in that workdir: restore it, or remove it to resume without the check"
        ) from None
    now = _flat(json.loads(resolved_config(config, meta).to_json()))
    changed = [
        f"{key} {saved[key]!r} -> {now[key]!r}"
        for key in sorted(saved.keys() & now.keys())
        if saved[key] != now[key] and not key.startswith(MAY_CHANGE_ON_RESUME)
    ]
    if changed:
        more = f"; and {len(changed) - 6} more" if len(changed) > 6 else ""
        shown = "; ".join(changed[:6]) + more
        raise ConfigError(
            f"{workdir} holds a run trained with other values ({shown}): resuming would mix "
            f"them. Rerun with the run's values, or start a new run from its step {step}: "
            f"--workdir NEW --config.resume={workdir.checkpoints()}/{step}"
        )


def train_spec(config: ml_collections.ConfigDict) -> TrainSpec:
    """What a training batch holds, from `config.input` and `config.train`."""
    return TrainSpec(
        ids_per_batch=config.train.ids_per_batch,
        clips_per_id=config.train.clips_per_id,
        num_frames=config.input.num_frames,
        sampler=config.input.train_sampler,
        frame_stride=config.input.frame_stride,
        stride_threshold=config.input.stride_threshold,
        flip_prob=config.input.flip_prob,
        erasing_prob=config.input.erasing_prob,
        seed=config.seed,
        batch_sampler=config.train.batch_sampler,
    )


def optim_spec(config: ml_collections.ConfigDict) -> OptimSpec:
    """The optimizer and its schedule, from `config.optim`."""
    o = config.optim
    return OptimSpec(**{f.name: o[f.name] for f in dataclasses.fields(OptimSpec)})


def eval_spec(config: ml_collections.ConfigDict) -> EvalSpec:
    """What the test protocol reads, from `config.input` and `config.eval`, with
    `input.worker_kind="auto"` resolved for this host's cores."""
    i, e = config.input, config.eval
    return EvalSpec(
        num_frames=i.num_frames, height=i.height, width=i.width,
        test_sampler=i.test_sampler, test_padding=i.test_padding,
        batch_size=e.batch_size, clip_weights=e.clip_weights,
        workers=i.workers, worker_kind=worker_kind(i.worker_kind),
        distance=e.distance, max_rank=e.max_rank, rerank=e.rerank,
        rerank_k1=e.rerank_k1, rerank_k2=e.rerank_k2, rerank_lambda=e.rerank_lambda,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run will do, known before it starts (printed at start-up, `tools/recipe.py`)."""

    tracklets: int
    identities: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    decay_steps: tuple[int, ...]
    global_batch: int
    frames_per_clip: int
    whole_tracklets: int = 0  # before a dense cut (`dataset.dense_train`); 0: not cut

    @property
    def frames_decoded(self) -> int:
        return self.total_steps * self.global_batch * self.frames_per_clip

    def lines(self) -> list[str]:
        epochs = self.total_steps / self.steps_per_epoch
        decays = ", ".join(f"{s:,}" for s in self.decay_steps if s < self.total_steps)
        pieces = (
            f" (dense pieces of {self.whole_tracklets:,} tracklets)" if self.whole_tracklets else ""
        )
        return [
            f"data: {self.tracklets:,} training tracklets{pieces} of {self.identities:,} "
            "identities; "
            f"{self.steps_per_epoch:,} steps per epoch of {self.global_batch} clips x "
            f"{self.frames_per_clip} frames",
            f"schedule: {self.total_steps:,} steps ({epochs:.1f} epochs); learning rate "
            f"decays at steps {decays or '(none)'}; {self.frames_decoded:,} frames decoded",
        ]


def plan(config: ml_collections.ConfigDict, batches: TrainBatches) -> Plan:
    """The run's plan from its config and its training batches."""
    spe = batches.steps_per_epoch
    total = config.train.num_steps or config.train.epochs * spe
    return Plan(
        tracklets=len(batches.index),
        identities=len(np.unique(batches.index.pid)),
        steps_per_epoch=spe,
        epochs=config.train.epochs,
        total_steps=total,
        decay_steps=tuple(decay_steps(optim_spec(config), spe, config.train.epochs)),
        global_batch=batches.spec.global_batch,
        frames_per_clip=batches.spec.num_frames,
        whole_tracklets=batches.data.whole_train_tracklets if config.dataset.dense_train else 0,
    )


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a run is made of, decided before anything is computed.

    Attributes:
        config: the experiment config (checked; never mutated).
        mesh: the `("data",)` device mesh.
        data: the prepared dataset; `meta`: what it tells the model.
        model: the model family: module, objective, test feature.
        eval: what the test protocol reads (`eval_spec`).
        batches: the training batches of this host (None for evaluation).
        plan: steps per epoch, total steps, decays (None for evaluation).
        tx, schedule: the optimizer and its learning rate (None for evaluation).
        abstract_state: shapes and shardings of the train state (None for evaluation).
    """

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    data: ReIDDataset
    meta: DataMeta
    model: ReIDModel
    eval: EvalSpec
    batches: TrainBatches | None = None
    plan: Plan | None = None
    tx: optax.GradientTransformation | None = None
    schedule: optax.Schedule | None = None
    abstract_state: TrainState | None = None

    def describe(self) -> str:
        """One line: the model, its size and the data it is sized for."""
        return describe(self.model, self.config, self.meta)


def plan_only(config: ml_collections.ConfigDict) -> tuple[DataMeta, Plan]:
    """What a training run of `config` will do on its prepared data, with no device, model
    or optimizer (`tools/recipe.py`: the plan before any accelerator is rented)."""
    data, meta = open_data(config)
    return meta, plan(config, TrainBatches(data, train_spec(config)))


def setup(config: ml_collections.ConfigDict, *, train: bool = True) -> Run:
    """The run of `config`: the mesh first (so that a batch the devices cannot split fails
    before any data is read), then the data, the model and, for training, the batches, the
    plan, the optimizer and the abstract train state.

    Raises:
        UserError: (subclasses) the batch does not split over the devices, the dataset is
            not prepared, or the config does not fit the data.
    """
    hosts.initialize()
    mesh = sharding.make_mesh(config)
    spec = train_spec(config)
    if train:
        sharding.check_batch(spec.global_batch, mesh)
    sharding.check_eval_batch(config.eval.batch_size, mesh)
    data, meta = open_data(config)
    model = build(config, meta)
    evaluation = eval_spec(config)
    if not train:
        return Run(config, mesh, data, meta, model, evaluation)
    batches = TrainBatches(data, spec, jax.process_index(), jax.process_count())
    tx, schedule = build_optimizer(optim_spec(config), batches.steps_per_epoch, config.train.epochs)
    return Run(
        config, mesh, data, meta, model, evaluation,
        batches=batches,
        plan=plan(config, batches),
        tx=tx,
        schedule=schedule,
        abstract_state=abstract_state(model, config, tx, mesh),
    )  # fmt: skip


def describe(model: ReIDModel, config: ml_collections.ConfigDict, meta: DataMeta) -> str:
    """One line: the model, its size and the data it is sized for."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(config))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    m = config.model
    return (
        f"{m.name} ({m.arch}, {m.variant}): {count:,} parameters; {meta.name}: "
        f"{meta.num_train_ids} training identities, {meta.num_cameras} cameras, "
        f"{meta.frame_size[0]}x{meta.frame_size[1]} frames"
    )
