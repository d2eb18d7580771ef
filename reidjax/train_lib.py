"""Training: the sharded train step and the training loop.

The set-up (data, model, state) comes from `reidjax.experiment`; the periodic evaluation
from `reidjax.eval_lib`. The step is a pure `(state, batch, key) -> (state, metrics)`
under `jax.jit` with explicit shardings and the state's buffers donated.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from input_pipeline.pipelines import TrainBatches, TrainSpec, iterate, to_device
from input_pipeline.sampling import apply_augmentation
from reidjax import checkpoint, divergence, eval_lib, experiment, runlock, sharding
from reidjax.experiment import TrainState
from reidjax.metrics_log import MetricsLog
from reidjax.models import ReIDModel
from reidjax.optim import build_optimizer, decay_steps

BATCH_KEYS = ("clips", "flip", "erase", "labels", "cameras")


class Preempted(Exception):
    """SIGTERM stopped the run after saving a checkpoint of `step`; rerun to resume."""

    def __init__(self, step: int):
        super().__init__(f"preempted: saved step {step}; run the same command to resume")
        self.step = step


def make_train_step(model: ReIDModel, tx: optax.GradientTransformation, schedule: optax.Schedule):
    """The pure train step `(state, batch, key) -> (state, metrics)`.

    The loss is the model family's objective, with every term in the metrics, plus
    accuracy, gradient and parameter norms, the learning rate and the new step. The step's
    randomness (DSANet's SAO permutation) is `fold_in(key, step)`. A step whose loss terms
    or norms are not finite returns the state unchanged.
    """

    def loss_fn(params, batch_stats, batch, key):
        variables = {"params": params, "batch_stats": batch_stats}
        clips = apply_augmentation(batch["clips"], batch["flip"], batch["erase"])
        out, batch_stats = model.train_forward(variables, clips, key)
        terms = model.objective(out, batch)
        accuracy = jnp.mean(jnp.argmax(out["logits"], -1) == batch["labels"])
        return terms["total"], (terms, batch_stats, accuracy)

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
            step=state.step + 1,
        )
        new = state.replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
        # A non-finite step changes nothing: the state stays the last finite one, and the
        # loop stops at its next check (reidjax.divergence).
        finite = divergence.all_finite(metrics)
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        return new, metrics

    return train_step


def compile_train_step(
    model: ReIDModel,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    mesh: jax.sharding.Mesh,
):
    """The jitted train step of the training loop: replicated state and key, the batch
    split over the `data` axis, the state's buffers donated."""
    repl, batch_sharding = sharding.replicated(mesh), sharding.data_sharded(mesh)
    return jax.jit(
        make_train_step(model, tx, schedule),
        in_shardings=(repl, batch_sharding, repl),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )


def train_spec(config: ml_collections.ConfigDict) -> TrainSpec:
    """What a training batch holds, from `config.input` and `config.train`."""
    return TrainSpec(
        ids_per_batch=config.train.ids_per_batch,
        clips_per_id=config.train.clips_per_id,
        num_frames=config.input.num_frames,
        sampler=config.input.train_sampler,
        frame_stride=config.input.frame_stride,
        flip_prob=config.input.flip_prob,
        erasing_prob=config.input.erasing_prob,
        seed=config.seed,
        batch_sampler=config.train.batch_sampler,
    )


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

    @property
    def frames_decoded(self) -> int:
        return self.total_steps * self.global_batch * self.frames_per_clip

    def lines(self) -> list[str]:
        epochs = self.total_steps / self.steps_per_epoch
        decays = ", ".join(f"{s:,}" for s in self.decay_steps if s < self.total_steps)
        return [
            f"data: {self.tracklets:,} training tracklets of {self.identities:,} identities; "
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
        decay_steps=tuple(decay_steps(config.optim, spe, config.train.epochs)),
        global_batch=batches.spec.global_batch,
        frames_per_clip=batches.spec.num_frames,
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains from the config in `workdir`, resuming from its latest checkpoint.

    Writes `workdir/config.json` (the config as run), logs every `train.log_every` steps
    (`workdir/metrics.jsonl`, TensorBoard, a progress line; process 0 only), evaluates
    every `train.eval_every` steps and after the last one. Stops with an error naming the
    step and the values when a loss term or a norm stops being finite, before any
    non-finite state is saved.

    Raises:
        Preempted: SIGTERM arrived; the step reached was saved.
        UserError: (subclasses) the data, weights, checkpoint or config cannot work, the
            workdir is in use by another trainer, a save failed, or training diverged.
    """
    sharding.maybe_initialize_distributed()
    data, meta = experiment.open_data(config)
    mesh = sharding.make_mesh(config)
    spec = train_spec(config)
    sharding.check_batch(spec.global_batch, mesh)
    batches = TrainBatches(data, spec, jax.process_index(), jax.process_count())
    run_plan = plan(config, batches)
    total = run_plan.total_steps
    tx, schedule = build_optimizer(config.optim, batches.steps_per_epoch, config.train.epochs)
    model = experiment.build(config, meta)
    experiment.write_config(workdir, config, meta)
    lock = runlock.WorkdirLock(workdir)  # one trainer per workdir (process 0 holds it)
    lock.acquire()
    try:
        ckpt = checkpoint.Checkpointer(
            os.path.join(workdir, "checkpoints"),
            config.train.keep_checkpoints,
            config.train.checkpoint_every,
        )
        state, origin = experiment.restore_or_init(model, config, tx, mesh, ckpt)
    except BaseException:
        lock.release()
        raise
    if jax.process_index() == 0:
        devices = jax.devices()
        lines = [
            experiment.describe(model, config, meta),
            *run_plan.lines(),
            f"devices: {len(devices)} {devices[0].platform} on {jax.process_count()} host(s); "
            f"mesh data={mesh.shape['data']}; workdir {workdir}",
            f"start: {origin}",
        ]
        print("\n".join(lines), flush=True)
    start = int(state.step)
    step_fn = compile_train_step(model, tx, schedule, mesh)
    stream = iter(
        iterate(
            batches.dataset(start, total - start), config.input.workers, config.input.worker_kind
        )
    )
    key = jax.random.key(config.seed + 1)
    evaluation = None
    if config.train.eval_every >= 0:
        evaluation = eval_lib.PeriodicEvaluation(config, model, data, mesh, workdir)
    stop = {"requested": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    log = MetricsLog(workdir, total, spec.global_batch, start)
    guard = None
    try:
        step = start
        on_device = to_device(stream, sharding.data_sharded(mesh), BATCH_KEYS)
        first = next(on_device, None)
        if first is not None:
            # Compiled ahead of the loop, so that the first progress line's clips/s and ETA
            # leave the compilation out.
            if jax.process_index() == 0:
                print("compiling the train step...", end=" ", flush=True)
            begin = time.perf_counter()
            step_fn = step_fn.lower(state, first, key).compile()
            if jax.process_index() == 0:
                print(f"{time.perf_counter() - begin:.1f} s", flush=True)
            log.restart_clock()
        for batch in itertools.chain([first] if first is not None else [], on_device):
            state, metrics = step_fn(state, batch, key)
            step += 1
            guard = guard or divergence.DivergenceGuard(metrics)
            guard.update(metrics)
            stopping = stop["requested"]  # read once: SIGTERM may arrive at any line
            force = step == total or stopping
            logging_step = step % config.train.log_every == 0 or step == total
            if logging_step or ckpt.due(step, force):
                guard.check(ckpt.latest_step())  # before anything is written
            if logging_step:
                log.write(step, jax.device_get(metrics))
            ckpt.save(step, state, force=force)
            if evaluation is not None and evaluation.due(step, total):
                guard.check(ckpt.latest_step())
                evaluation.run(state, step, final=step == total, log=log)
            if stopping and step < total:
                ckpt.wait()
                raise Preempted(step)
        ckpt.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        stream.close()  # stops reader threads / worker processes
        ckpt.close()
        if evaluation is not None:
            evaluation.close()
        log.close()
        lock.release()
    return state
