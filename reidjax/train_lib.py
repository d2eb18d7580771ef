"""Training: model set-up, the sharded train state and step, and the training loop.

Start-up order (STYLE.md): shapes first (`jax.eval_shape` of the init), then the
variables, then the ImageNet weights of `config.init.imagenet` inflated into the trunk,
then the state placed directly with its shardings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from reidjax import losses, weights
from reidjax.models import build_model
from reidjax.models.factory import dsanet_config, dummy_clips
from reidjax.models.summary import count_params

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def init_variables(
    config: ml_collections.ConfigDict, key: jax.Array
) -> tuple[nn.Module, dict, weights.InflationReport | None]:
    """Builds the configured model and its initial variables.

    Returns:
        (model, variables, report): `report` says what the ImageNet initialisation copied,
        inflated or kept (None when `config.init.imagenet` is empty).

    Raises:
        ValueError: unknown model/dataset names; `weights.WeightFileError` for a missing or
            mismatched weight file (the message names the conversion command).
    """
    model = build_model(config)
    # The variables are created replicated, so the partitionable threefry buys nothing here;
    # the classic one compiles the init 2-3x faster.
    with jax.threefry_partitionable(False):
        variables = jax.jit(model.init)(key, dummy_clips(config))
    report = None
    if config.init.imagenet:
        variables, report = weights.load_imagenet(config.init.imagenet, variables)
    return model, variables, report


def startup(config: ml_collections.ConfigDict) -> tuple[nn.Module, dict, str]:
    """The start-up path of both entry points: model, initial variables, one-line report.

    Raises:
        SystemExit: (code 1) with the message of a missing or mismatched weight file,
            which names the conversion command.
    """
    try:
        model, variables, report = init_variables(config, jax.random.key(config.seed))
    except weights.WeightFileError as e:
        logging.error("%s", e)
        raise SystemExit(1) from e
    line = (
        f"{config.model.name} ({config.model.arch}, {config.model.variant}): "
        f"{count_params(variables['params']):,} parameters, "
        + (report.summary() if report else "from scratch (config.init.imagenet is empty)")
    )
    return model, variables, line


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint holds: the step, parameters, BN statistics, optimizer."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def create_train_state(variables: dict, tx: optax.GradientTransformation, sharding) -> TrainState:
    """The initial state, placed with `sharding` (replicated parameters for data parallelism)."""

    def make(params, batch_stats):
        return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params))

    return jax.jit(make, out_shardings=sharding)(variables["params"], variables["batch_stats"])


def normalize(clips: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 clips -> ImageNet-normalised floats, on the device."""
    return ((clips.astype(jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD).astype(dtype)


def make_train_step(
    model: nn.Module,
    config: ml_collections.ConfigDict,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
):
    """The pure train step `(state, batch, key) -> (state, metrics)`.

    The loss is the model's total (CE + triplet for baseline/STRF, Eqs. (9)-(10) for
    DSANet) with every term in the metrics, plus accuracy, gradient and parameter norms and
    the learning rate. The step's randomness (DSANet's SAO permutation) is
    `fold_in(key, step)`.
    """
    is_dsanet = config.model.name == "dsanet"
    switches = dsanet_config(config) if is_dsanet else None

    def loss_fn(params, batch_stats, batch, key):
        out, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            normalize(batch["clips"]),
            train=True,
            mutable=["batch_stats"],
            rngs={"sao": key} if is_dsanet else {},
        )
        labels = batch["labels"]
        if is_dsanet:
            terms = losses.dsanet_objective(out, labels, batch["cameras"], switches, config.loss)
        else:
            terms = losses.reid_objective(out, labels, config.loss)
        accuracy = jnp.mean(jnp.argmax(out["logits"], -1) == labels)
        return terms["total"], (terms, updates["batch_stats"], accuracy)

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        step_key = jax.random.fold_in(key, state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (terms, batch_stats, accuracy)), grads = grad_fn(
            state.params, state.batch_stats, batch, step_key
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {f"loss/{k}": v for k, v in terms.items()}
        metrics.update(
            accuracy=accuracy,
            grad_norm=optax.tree.norm(grads),
            param_norm=optax.tree.norm(params),
            lr=schedule(state.step),
        )
        new = state.replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
        return new, metrics

    return train_step


def maybe_initialize_distributed() -> None:
    """`jax.distributed.initialize()` for multi-process runs (a no-op on one process).

    Driven by the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID (or a cluster JAX auto-detects, such as a Cloud TPU slice, with
    REIDJAX_DISTRIBUTED=1).
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get("REIDJAX_DISTRIBUTED") == "1":
        jax.distributed.initialize()


def open_dataset(config: ml_collections.ConfigDict):
    """The ingested dataset of the config; the synthetic one is generated on first use."""
    from input_pipeline.records import IngestedDataset

    directory = os.path.expanduser(config.dataset.dir)
    if config.dataset.name == "synthetic":
        d, i = config.dataset, config.input
        directory = directory or os.path.expanduser(
            f"~/.cache/reidjax/synthetic-{d.synthetic_ids}ids-{d.synthetic_cameras}cams-"
            f"{i.height}x{i.width}-seed{config.seed}"
        )
        manifest = os.path.join(directory, "manifest.json")

        def generate_once():
            if not os.path.exists(manifest):
                from input_pipeline.synthetic import generate

                logging.info("generating the synthetic dataset in %s", directory)
                generate(
                    directory,
                    config.dataset.synthetic_ids,
                    config.dataset.synthetic_cameras,
                    config.seed,
                    (config.input.height, config.input.width),
                    overwrite=True,
                )

        if jax.process_count() == 1:
            generate_once()
        else:  # process 0 first (shared file systems); then any host that lacks it
            from jax.experimental import multihost_utils

            if jax.process_index() == 0:
                generate_once()
            multihost_utils.sync_global_devices("reidjax synthetic dataset")
            generate_once()
    elif not directory:
        raise ValueError(
            f"config.dataset.dir is empty: ingest {config.dataset.name} first with "
            f"python -m input_pipeline.ingest --dataset {config.dataset.name} --root "
            f"DATASET_DIR --out DIR, then pass --config.dataset.dir=DIR"
        )
    return IngestedDataset(directory)


def resolve_sizes(config: ml_collections.ConfigDict, data) -> None:
    """Identities and cameras from the data when the config leaves them at 0; checks the
    frame size."""
    train = data.splits["train"]
    with config.unlocked():
        if config.model.num_classes == 0:
            config.model.num_classes = len(np.unique(train.pid))
        if config.dataset.num_cameras == 0:
            config.dataset.num_cameras = int(max(train.camid.max(), 0) + 1)
    if tuple(data.size) != (config.input.height, config.input.width):
        raise ValueError(
            f"the ingested frames are {data.size[0]}x{data.size[1]} but the config expects "
            f"{config.input.height}x{config.input.width}: ingest with --size or change "
            "config.input.height/width"
        )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains from the config, resuming from the latest checkpoint in `workdir/checkpoints`.

    Logs every `train.log_every` steps: JSONL metrics in `workdir/metrics.jsonl` and a
    progress line (process 0 only). Stops with an error naming the step and the term when a
    logged loss is not finite. SIGTERM (preemption) saves a checkpoint and returns.
    """
    import grain

    from input_pipeline.pipelines import TrainSpec, train_dataset
    from reidjax import checkpoint, sharding
    from reidjax.optim import build_optimizer

    maybe_initialize_distributed()
    data = open_dataset(config)
    resolve_sizes(config, data)
    mesh = sharding.make_mesh(config)
    spec = TrainSpec(
        ids_per_batch=config.train.ids_per_batch,
        clips_per_id=config.train.clips_per_id,
        num_frames=config.input.num_frames,
        sampler=config.input.train_sampler,
        frame_stride=config.input.frame_stride,
        flip_prob=config.input.flip_prob,
        erasing_prob=config.input.erasing_prob,
        seed=config.seed,
    )
    sharding.check_batch(spec.global_batch, mesh)
    num_ids = len(np.unique(data.splits["train"].pid))
    steps_per_epoch = max(1, num_ids // spec.ids_per_batch)
    total = config.train.num_steps or config.train.epochs * steps_per_epoch
    tx, schedule = build_optimizer(config.optim, steps_per_epoch, config.train.epochs)
    model, variables, report = init_variables(config, jax.random.key(config.seed))
    state = create_train_state(variables, tx, sharding.replicated(mesh))
    ckpt = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        config.train.keep_checkpoints,
        config.train.checkpoint_every,
    )
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        logging.info("resumed from step %d", int(state.step))
    elif config.resume:
        state = restore_from(config.resume, state)
        logging.warning("started from %s (step %d)", config.resume, int(state.step))
    elif report is not None:
        logging.info("%s", report.summary())
    start = int(state.step)
    repl, batch_sharding = sharding.replicated(mesh), sharding.data_sharded(mesh)
    step_fn = jax.jit(
        make_train_step(model, config, tx, schedule),
        in_shardings=(repl, batch_sharding, repl),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )
    batches = train_dataset(
        data, spec, start, total - start, jax.process_index(), jax.process_count()
    ).to_iter_dataset(
        grain.ReadOptions(num_threads=config.train.data_threads, prefetch_buffer_size=4)
    )
    key = jax.random.key(config.seed + 1)
    evaluator = best = None
    if config.train.eval_every >= 0:
        from reidjax.evaluator import Evaluator

        evaluator = Evaluator(model, config, data, mesh, print)
        best = checkpoint.BestCheckpointer(os.path.join(workdir, "checkpoints_best"))
    stop = {"requested": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    log = MetricsLog(workdir, total, spec.global_batch, start)
    try:
        step = start
        for local in batches:
            batch = sharding.global_batch_array(
                {k: local[k] for k in ("clips", "labels", "cameras")}, batch_sharding
            )
            state, metrics = step_fn(state, batch, key)
            step += 1
            if step % config.train.log_every == 0 or step == total:
                log.write(step, jax.device_get(metrics))
            ckpt.save(step, state, force=step == total)
            every = config.train.eval_every
            if evaluator and (step == total or (every > 0 and step % every == 0)):
                evaluate_during_training(
                    evaluator, state, step, step == total, workdir, log, best, model, config
                )
            if stop["requested"]:
                ckpt.save(step, state, force=True)
                logging.warning("SIGTERM: saved step %d, stopping", step)
                break
        ckpt.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        ckpt.close()
        if best is not None:
            best.close()
        log.close()
    return state


def restore_from(path: str, state: TrainState) -> TrainState:
    """`config.resume`: the train state of another run's checkpoint folder (its latest
    step) or of one step folder inside it (`.../checkpoints/300`).

    Raises:
        FileNotFoundError / CheckpointMismatchError: nothing there, or another model's.
    """
    from reidjax import checkpoint

    path = os.path.abspath(os.path.expanduser(path))
    step = None
    if os.path.basename(path).isdigit() and os.path.isdir(path):
        path, step = os.path.dirname(path), int(os.path.basename(path))
    return checkpoint.restore_checked(path, state, step, what=f"config.resume={path}")


def evaluate_during_training(
    evaluator, state, step, final, workdir, log, best, model, config
) -> None:
    """The periodic evaluation: metrics to the log, the best-mAP checkpoint, and after the
    last step the report of eval.py (`workdir/eval`: results.json and pictures)."""
    from reidjax.evaluator import write_report

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    result = evaluator.evaluate(variables)
    row = result.table_row()
    log.write_eval(step, row)
    best.save(step, state, row["mAP"])
    if final:
        label = f"{config.model.name} step {step}"
        write_report(
            result, os.path.join(workdir, "eval"), evaluator.data, step, label, model,
            variables, config, {"dataset": config.dataset.name, "checkpoint": "latest"},
        )  # fmt: skip


class MetricsLog:
    """JSONL metrics, TensorBoard scalars (`workdir/tensorboard`) and a progress line
    (steps/s, clips/s, ETA), on process 0 only."""

    def __init__(self, workdir: str, total: int, global_batch: int, start: int):
        self.total, self.global_batch = total, global_batch
        self.active = jax.process_index() == 0
        self.file = self.board = None
        if self.active:
            from tensorboardX import SummaryWriter

            self.file = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
            self.board = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self.last_step, self.last_time = start, time.perf_counter()

    def write(self, step: int, metrics: dict) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        for name, value in values.items():
            if name.startswith("loss/") and not math.isfinite(value):
                raise FloatingPointError(f"step {step}: {name} is {value}; stopping")
        now = time.perf_counter()
        steps_per_s = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        values.update(
            step=step, steps_per_s=steps_per_s, clips_per_s=steps_per_s * self.global_batch
        )
        if not self.active:
            return
        self.file.write(json.dumps(values) + "\n")
        self.file.flush()
        for name, value in values.items():
            if name != "step":
                self.board.add_scalar(name, value, step)
        self.board.flush()
        eta = (self.total - step) / max(steps_per_s, 1e-9)
        print(
            f"step {step}/{self.total}  loss {values['loss/total']:.4f}  "
            f"acc {values['accuracy']:.3f}  lr {values['lr']:.2e}  "
            f"{values['clips_per_s']:.1f} clips/s  ETA {eta / 60:.1f} min",
            flush=True,
        )

    def write_eval(self, step: int, row: dict[str, float]) -> None:
        """Evaluation numbers (fractions) as `eval/...` scalars and one printed line. The
        time spent evaluating is left out of the next clips/s and ETA."""
        self.last_step, self.last_time = step, time.perf_counter()
        if not self.active:
            return
        values = {f"eval/{k}": float(v) for k, v in row.items()}
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        for name, value in values.items():
            self.board.add_scalar(name, value, step)
        self.board.flush()
        print(
            f"eval step {step}: " + "  ".join(f"{k} {100 * v:.2f}" for k, v in row.items()),
            flush=True,
        )

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.board.close()
