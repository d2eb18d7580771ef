"""Training: the sharded train step and the training loop.

The set-up (data, model, batches, optimizer, plan) is `reidjax.experiment.Run`; where the
state starts, `reidjax.training.restore`; the periodic evaluation,
`reidjax.evaluation.eval_lib`. The step is a pure `(state, batch, key) -> (state, metrics)`
under `jax.jit` with explicit shardings and the state's buffers donated.
"""

from __future__ import annotations

import contextlib
import itertools
import time

import jax
import jax.numpy as jnp
import ml_collections
import optax

from input_pipeline.augment import apply_augmentation
from input_pipeline.batch import TRAIN_FIELDS
from input_pipeline.pipelines import iterate, to_device
from reidjax import experiment
from reidjax.evaluation import eval_lib
from reidjax.models import ReIDModel
from reidjax.runtime import sharding
from reidjax.runtime.workdir import Workdir
from reidjax.training import checkpoint, divergence, hosts, preemption, restore, runlock
from reidjax.training.metrics_log import MetricsLog
from reidjax.training.state import TrainState


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
    or gradient norm are not finite leaves the parameters, BN statistics and optimizer
    state unchanged (the step counter advances); a parameter norm that stops being finite
    stops the run at the loop's next check, before anything is saved.
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
        metrics = {f"loss/{k}": v for k, v in terms.items()}
        metrics["grad_norm"] = optax.tree.norm(grads)
        # A step whose loss terms or gradient are not finite changes nothing: the guard is
        # decided before the update and applied inside its elementwise pass (no extra
        # pass over the state); the loop stops at its next check (reidjax.training.divergence).
        finite = divergence.all_finite(metrics)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        params, opt_state, batch_stats = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            (params, opt_state, batch_stats),
            (state.params, state.opt_state, state.batch_stats),
        )
        metrics.update(
            accuracy=accuracy,
            param_norm=optax.tree.norm(params),
            lr=schedule(state.step),
            step=state.step + 1,
        )
        new = state.replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains from the config in `workdir`, resuming from its latest checkpoint.

    Writes `workdir/config.json` (the config as run), logs every `train.log_every` steps
    (`workdir/metrics.jsonl`, TensorBoard, a progress line; process 0 only), evaluates
    every `train.eval_every` steps and after the last one. Stops with an error naming the
    step and the values when a loss term or a norm stops being finite, before any
    non-finite state is saved.

    Raises:
        Preempted: SIGTERM arrived (on any process); the step reached was saved.
        preemption.StoppedAtStartup: SIGTERM arrived before the first step, with
            `preemption.install()` in effect (train.py).
        UserError: (subclasses) the data, weights, checkpoint or config cannot work, the
            workdir is in use by another trainer, a save failed, or training diverged.
    """
    return train(experiment.setup(config), Workdir(workdir))


def start_lines(run: experiment.Run, workdir: Workdir, origin: str) -> list[str]:
    """The start-up report: model, data and plan, devices, where the state came from."""
    devices = jax.devices()
    return [
        run.describe(),
        *run.plan.lines(),
        f"devices: {len(devices)} {devices[0].platform} on {jax.process_count()} host(s); "
        f"mesh data={run.mesh.shape['data']}; workdir {workdir}",
        f"start: {origin}",
    ]


class StepProfiler(contextlib.AbstractContextManager):
    """A `jax.profiler` trace of steps `first .. first + count − 1` into `folder` (no
    trace when `count` is 0); the second step after a start skips the compilation and the
    first step's warm-up. A run that stops inside the window still closes the trace."""

    def __init__(self, folder: str, first: int, count: int):
        self.folder, self.first, self.last, self.active = folder, first, first + count - 1, False
        self.count = count

    def before(self, step: int) -> None:
        if self.count and step == self.first:
            jax.profiler.start_trace(self.folder)
            self.active = True

    def after(self, step: int, state) -> None:
        if self.active and step == self.last:
            jax.block_until_ready(state)
            self._stop()
            if jax.process_index() == 0:
                print(f"profiled steps {self.first}-{self.last} into {self.folder}", flush=True)

    def _stop(self) -> None:
        jax.profiler.stop_trace()
        self.active = False

    def __exit__(self, *exc) -> None:
        if self.active:
            self._stop()


def train(run: experiment.Run, workdir: Workdir) -> TrainState:
    """The training loop of `run` in `workdir` (see `train_and_evaluate`)."""
    preemption.check("after the data and model set-up")
    config, total = run.config, run.plan.total_steps
    with contextlib.ExitStack() as resources:
        # The lock first: a refused second trainer must not touch the running one's files.
        lock = runlock.WorkdirLock(workdir)  # one trainer per workdir (process 0)
        lock.acquire()
        resources.callback(lock.release)
        ckpt = checkpoint.Checkpointer(
            workdir.checkpoints(), config.train.keep_checkpoints, config.train.checkpoint_every
        )
        resources.callback(ckpt.close)
        resuming = ckpt.latest_step() is not None
        if resuming:  # the same run, or a clear refusal
            experiment.check_resume(workdir, config, run.meta, ckpt.latest_step())
        else:  # a fresh run records its config before anything can fail
            experiment.write_config(workdir, config, run.meta)
        state, origin = restore.restore_or_init(run, ckpt)
        preemption.check("after the checkpoint restore")
        if resuming:  # rewritten only once the restored state is known to fit
            experiment.write_config(workdir, config, run.meta)
        # What a divergence is judged against (divergence.rollback_advice): read once.
        start_norm = float(jax.device_get(divergence.params_norm(state.params)))

        def advice() -> str:
            ckpt.wait()
            return divergence.rollback_advice(ckpt, run.abstract_state, start_norm)

        if jax.process_index() == 0:
            print("\n".join(start_lines(run, workdir, origin)), flush=True)

        # ---------------------------------------------------------------- the streams
        start = int(state.step)
        stream = iter(
            iterate(
                run.batches.dataset(start, total - start),
                config.input.workers,
                config.input.worker_kind,
            )
        )
        resources.callback(stream.close)  # stops reader threads / worker processes
        evaluation = None
        if config.train.eval_every >= 0:
            evaluation = eval_lib.PeriodicEvaluation(run, workdir)
            resources.callback(evaluation.close)
        log = MetricsLog(workdir, total, run.batches.spec.global_batch, start)
        resources.callback(log.close)
        # SIGTERM from here on is a request to stop after a step (on several processes:
        # the same step on all of them).
        stops = resources.enter_context(hosts.StopRequests())

        # ---------------------------------------------------------------- compile
        key = jax.random.key(config.seed + 1)
        step_fn = compile_train_step(run.model, run.tx, run.schedule, run.mesh)
        on_device = to_device(stream, sharding.data_sharded(run.mesh), TRAIN_FIELDS)
        first = next(on_device, None)
        if first is not None:
            # Compiled ahead of the loop, so that the first progress line's clips/s and ETA
            # leave the compilation out.
            preemption.check("before the compile")
            if jax.process_index() == 0:
                print("compiling the train step...", end=" ", flush=True)
            begin = time.perf_counter()
            step_fn = step_fn.lower(state, first, key).compile()
            if jax.process_index() == 0:
                print(f"{time.perf_counter() - begin:.1f} s", flush=True)
            # All processes start stepping together: a fast one (a warm compilation cache)
            # would otherwise time out in the first collective's set-up.
            preemption.check("after the compile")
            hosts.barrier("compiled")
            log.restart_clock()

        # ---------------------------------------------------------------- the loop
        step, guard = start, None
        profile = resources.enter_context(
            StepProfiler(workdir.profile, start + 2, config.train.profile_steps)
        )
        for batch in itertools.chain([first] if first is not None else [], on_device):
            profile.before(step + 1)
            state, metrics = step_fn(state, batch, key)
            step += 1
            profile.after(step, state)
            guard = guard or divergence.DivergenceGuard(metrics)
            guard.update(metrics)
            stopping = stops.requested(step)  # once per step: SIGTERM may come at any line
            force = step == total or stopping
            logging_step = step % config.train.log_every == 0 or step == total
            if logging_step or ckpt.due(step, force):
                guard.check(advice)  # before anything is written
            if logging_step:
                log.write(step, jax.device_get(metrics))
            ckpt.save(step, state, force=force)
            if evaluation is not None and evaluation.due(step, total):
                guard.check(advice)
                hosts.barrier(f"evaluate-{step}")  # its collectives start together too
                evaluate(evaluation, ckpt, state, step, total, log)
            if stopping and step < total:
                ckpt.wait()
                raise Preempted(step)
        if start == total and evaluation is not None and not evaluation.reported():
            # Stopped during the final evaluation before: its step is saved, its report
            # was not written.
            evaluate(evaluation, ckpt, state, total, total, log)
        ckpt.wait()
    return state


def evaluate(evaluation, ckpt, state: TrainState, step: int, total: int, log) -> None:
    """The periodic evaluation at `step`; a preemption notice stops it within a batch,
    then `step` is saved.

    Raises:
        Preempted: the notice came during the evaluation.
    """
    try:
        evaluation.run(state, step, final=step == total, log=log)
    except preemption.EvaluationStopped:
        ckpt.save(step, state, force=True)
        ckpt.wait()
        raise Preempted(step) from None
