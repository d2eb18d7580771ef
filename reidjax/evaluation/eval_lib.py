"""Evaluation orchestration: the periodic evaluation of training, `eval.py` on a workdir,
and the protocols that average over train/test splits (iLIDS-VID's and PRID2011's ten)."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from input_pipeline import registry
from input_pipeline.records import ReIDDataset
from input_pipeline.sampling import dense_clips
from reidjax import experiment
from reidjax.evaluation import report
from reidjax.evaluation.evaluator import Evaluator
from reidjax.models import ReIDModel
from reidjax.runtime import sharding, workdir_io
from reidjax.runtime.workdir import Workdir
from reidjax.training import integrity, preemption, restore
from reidjax.training.metrics_log import MetricsLog
from reidjax.training.state import TrainState


def attention_inputs(data: ReIDDataset, num_frames: int, count: int = 3) -> np.ndarray:
    """The first clip of `count` query tracklets spread over the split: uint8
    `[count, T, H, W, 3]` (the clips the attention picture shows)."""
    query = data.splits["query"]
    picks = np.linspace(0, len(query) - 1, min(count, len(query))).round().astype(int)
    clips = []
    for i in picks:
        idx, _ = dense_clips(int(query.count[i]), num_frames)
        clips.append(data.frames(int(query.first[i]) + idx[0]))
    return np.stack(clips)


def attention(model: ReIDModel, variables: dict, data: ReIDDataset, num_frames: int):
    """(clips, {label: maps `[B, T, h, w]`}) of the model's attention maps, or None for a
    family without any."""
    if not model.maps:
        return None
    clips = attention_inputs(data, num_frames)
    maps = jax.jit(model.attention)(jax.device_get(variables), clips)
    return clips, {label: np.asarray(m) for label, m in maps.items()}


def report_extra(
    config: ml_collections.ConfigDict,
    data: ReIDDataset,
    checkpoint_: object,
    reranked: bool,
    writer: str,
) -> dict:
    """What `results.json` says besides the numbers, the same keys whoever writes it."""
    return {
        "dataset": data.manifest["name"],
        "checkpoint": checkpoint_,
        "reranked": reranked,
        "distance": config.eval.distance,
        "written_by": writer,
    }


class BestCheckpointer:
    """Keeps the one checkpoint with the highest evaluation `metric` (e.g. mAP)."""

    def __init__(self, directory: str, metric: str = "mAP"):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m[metric], best_mode="max", create=True
        )
        self.metric = metric
        self.directory = os.path.abspath(directory) if workdir_io.is_local(directory) else directory
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, value: float) -> None:
        integrity.save(self.directory, step, state, set(self.manager.all_steps()))
        self.manager.save(
            step, args=ocp.args.StandardSave(state), metrics={self.metric: value}, force=True
        )

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class PeriodicEvaluation:
    """The evaluation of `train.py`: every `train.eval_every` steps (0: after the last step
    only) the metrics go to the log, the best-mAP state to `workdir/checkpoints_best`, and
    after the last step eval.py's report to `workdir/eval`."""

    def __init__(self, run: experiment.Run, workdir: Workdir):
        self.config, self.model, self.data, self.workdir = run.config, run.model, run.data, workdir
        self.evaluator = Evaluator(run.model.predict, run.eval, run.data, run.mesh, print)
        if jax.process_count() == 1:  # a notice stops it within a batch (train_lib saves)
            self.evaluator.extract.should_stop = preemption.requested
        self.best = BestCheckpointer(workdir.checkpoints(best=True))

    def reported(self) -> bool:
        """Whether the final report was written (a run stopped during its final
        evaluation has its last step saved but no report)."""
        return workdir_io.exists(os.path.join(self.workdir.eval(), "results.json"))

    def due(self, step: int, total: int) -> bool:
        every = self.config.train.eval_every
        return step == total or (every > 0 and step % every == 0)

    def run(self, state: TrainState, step: int, *, final: bool, log: MetricsLog) -> None:
        variables = state.variables
        result = self.evaluator.evaluate(variables)
        row = result.table_row()
        log.write_eval(step, row)
        self.best.save(step, state, row["mAP"])
        if final:
            report.write_report(
                result,
                self.workdir.eval(),
                self.data,
                step=step,
                title=f"{self.config.model.name} step {step}",
                attention=attention(self.model, variables, self.data, self.config.input.num_frames),
                extra=report_extra(self.config, self.data, "latest", False, "train.py"),
            )

    def close(self) -> None:
        self.best.close()


def evaluate_workdir(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    step: int | None = None,
    best: bool = False,
    init: bool = False,
    rerank: bool | None = None,
    save_features: bool = False,
    output: str | None = None,
    trained_on: str | None = None,
) -> dict:
    """eval.py on one workdir: restore, evaluate, write the report.

    Args:
        step: the checkpoint step (default: latest); `best`: the best-mAP checkpoint that
            training keeps in `workdir/checkpoints_best`; `init`: the initial weights (no
            checkpoint: the untrained or ImageNet-initialised model, a baseline).
        output: report folder (default `workdir/eval`).
        trained_on: set when `config` tests on another dataset than the run trained on
            (`evaluate_across`): recorded in `results.json` and the picture titles.

    Returns:
        The numbers written to `results.json`.

    Raises:
        UserError: (subclasses) no dataset, no checkpoint, another model's checkpoint, or
            no query with a match.
    """
    run = experiment.setup(config, train=False)
    data, model, mesh, folder = run.data, run.model, run.mesh, Workdir(workdir)
    if init:
        variables, _ = restore.initial_variables(model, config)
        variables, restored_step = jax.device_put(variables, sharding.replicated(mesh)), 0
    else:
        where = folder.checkpoints(best)
        variables, restored_step = restore.restore_variables(model, config, where, mesh, step)
    evaluator = Evaluator(model.predict, run.eval, data, mesh)
    result = evaluator.evaluate(variables, rerank)
    reranked = bool(config.eval.rerank if rerank is None else rerank)
    which = "init" if init else ("best" if best else "latest" if step is None else step)
    # Training's own report stays in WORKDIR/eval; eval.py's go next to it, one folder per
    # checkpoint and option, so that nothing is overwritten without asking (--output).
    tag = "init" if init else f"{'best-' if best else ''}step{restored_step}"
    output = output or folder.eval(tag + ("_rerank" if reranked else ""))
    extra = report_extra(config, data, which, reranked, "eval.py")
    title = f"{config.model.name} step {restored_step}" + (" +rerank" if reranked else "")
    if trained_on:
        extra["trained_on"] = trained_on
        title += f", trained on {trained_on}, tested on {extra['dataset']}"
    numbers = report.write_report(
        result,
        output,
        data,
        step=restored_step,
        title=title,
        attention=attention(model, variables, data, config.input.num_frames),
        extra=extra,
    )
    if save_features:
        report.save_features(result, os.path.join(output, "features.npz"))
    if jax.process_index() == 0:
        print(f"report: {output}", flush=True)
    return numbers


def evaluate_splits(
    config: ml_collections.ConfigDict, workdir: str, output: str | None = None, **kwargs
) -> dict[str, dict]:
    """`evaluate_workdir` on each of the dataset's train/test splits (iLIDS-VID's and
    PRID2011's ten), and their mean.

    `{split}` in `workdir` is replaced by 0..9 and `config.dataset.split` set to it: each
    split has its own training run (the prepared dataset holds all ten splits). The
    mean goes to the common parent folder's `eval/results.json` (or `output`).

    Returns:
        `{"split 0": numbers, ..., "mean": {R1, ..., mINP}}`.
    """
    rows = {}
    num_splits = registry.get(config.dataset.name).splits
    for split in range(num_splits):
        split_config = config.copy_and_resolve_references()
        with split_config.unlocked():
            split_config.dataset.split = split
        rows[f"split {split}"] = evaluate_workdir(
            split_config, workdir.replace("{split}", str(split)), **kwargs
        )
    mean = {k: sum(r[k] for r in rows.values()) / num_splits for k in report.TABLE_COLUMNS}
    # The folder above the first one that differs between splits (string-based: works
    # for gs:// workdirs too).
    parent = os.path.dirname(workdir[: workdir.index("{split}")])
    if jax.process_index() == 0:
        out = output or Workdir(parent).eval()
        report.write_json(os.path.join(out, "results.json"), {"mean": mean, "splits": rows})
    return {**rows, "mean": mean}


def evaluate_across(
    config: ml_collections.ConfigDict,
    workdir: str,
    dataset: str,
    output: str | None = None,
    **kwargs,
) -> dict[str, dict]:
    """A run's model on another dataset's test protocol (cross-dataset evaluation).

    `config` is the run's (its `config.json`, with any `--config` overrides, e.g.
    `dataset.folder_name` or `dataset.data_dir` for the dataset tested): its model, frame
    size and test rule are kept, and the model keeps the sizes it was trained with
    (`model.num_classes`, `dataset.num_cameras` of the run); the classifiers are restored
    but the test feature does not use them. The tested dataset must be prepared at the
    run's frame size. A dataset with several train/test splits (iLIDS-VID, PRID2011) is
    tested on each split's test half and the mean reported. Reports go to
    `WORKDIR/eval/on_<dataset>` (`/split<K>` per split) or `output`.

    Returns:
        `{"<run> on <dataset>": numbers}`, or per split and `mean`.
    """
    trained_on = config.dataset.name
    if trained_on == "folder":
        trained_on = f"folder:{config.dataset.folder_name}"
    test = config.copy_and_resolve_references()
    with test.unlocked():
        test.dataset.name = dataset
        test.dataset.dense_train = False  # training splits are not read
    label = dataset if dataset != "folder" else f"folder:{test.dataset.folder_name}"
    name = os.path.basename(os.path.normpath(workdir))
    base = output or Workdir(workdir).eval(f"on_{label.replace(':', '_')}")
    num_splits = registry.get(dataset).splits
    if num_splits <= 1:
        numbers = evaluate_workdir(test, workdir, output=base, trained_on=trained_on, **kwargs)
        return {f"{name} on {label}": numbers}
    rows = {}
    for split in range(num_splits):
        with test.unlocked():
            test.dataset.split = split
        out = os.path.join(base, f"split{split}")
        rows[f"{name} on {label} split {split}"] = evaluate_workdir(
            test, workdir, output=out, trained_on=trained_on, **kwargs
        )
    mean = {k: sum(r[k] for r in rows.values()) / num_splits for k in report.TABLE_COLUMNS}
    if jax.process_index() == 0:
        report.write_json(os.path.join(base, "results.json"), {"mean": mean, "splits": rows})
    return {**rows, f"{name} on {label} (mean)": mean}
