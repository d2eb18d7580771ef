"""The training log: JSONL metrics, TensorBoard scalars and a progress line."""

from __future__ import annotations

import json
import sys
import time

import jax

from reidjax.runtime import workdir_io
from reidjax.runtime.workdir import Workdir


def _import_summary_writer():
    """tensorboardX's SummaryWriter, imported without PyTorch. tensorboardX imports torch
    whenever it is installed, only to recognise torch tensors (reidjax logs floats): that
    would put PyTorch into every training process and add seconds to every start."""
    if "torch" in sys.modules:  # already there: nothing to save
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError while this is set
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


SummaryWriter = _import_summary_writer()


def truncate_after(path: str, step: int) -> None:
    """Drops the rows of `path` (JSONL) past `step`, atomically: after a resume from `step`,
    the steps that are run again must not appear twice."""
    if not workdir_io.exists(path):
        return
    lines = workdir_io.read_text(path).splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
        except json.JSONDecodeError:  # a line cut by a kill: drop it
            continue
    if len(keep) == len(lines):
        return
    workdir_io.write_text(path, "".join(keep))


class MetricsLog:
    """JSONL metrics, TensorBoard scalars (`workdir/tensorboard`) and a progress line
    (steps/s, clips/s, ETA), on process 0 only."""

    def __init__(self, workdir: Workdir | str, total: int, global_batch: int, start: int):
        workdir = Workdir.of(workdir)
        self.total, self.global_batch = total, global_batch
        self.active = jax.process_index() == 0
        self.file = self.board = None
        self.rows = None  # a bucket's metrics.jsonl, rewritten whole (no appends there)
        if self.active:
            workdir_io.makedirs(workdir.root)
            self.path = workdir.metrics
            truncate_after(self.path, start)
            if workdir_io.is_local(self.path):
                self.file = open(self.path, "a")  # noqa: SIM115
            else:
                old = workdir_io.read_text(self.path) if workdir_io.exists(self.path) else ""
                self.rows = old.splitlines(keepends=True)
            self.board = SummaryWriter(workdir.tensorboard)
        self.last_step, self.last_time = start, time.perf_counter()

    def _append(self, row: dict) -> None:
        line = json.dumps(row) + "\n"
        if self.rows is None:
            self.file.write(line)
            self.file.flush()
        else:
            self.rows.append(line)
            workdir_io.write_text(self.path, "".join(self.rows))

    def restart_clock(self) -> None:
        """Measure the next clips/s and ETA from now (after compilation)."""
        self.last_time = time.perf_counter()

    def write(self, step: int, metrics: dict) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        now = time.perf_counter()
        steps_per_s = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        values.update(
            step=step, steps_per_s=steps_per_s, clips_per_s=steps_per_s * self.global_batch
        )
        if not self.active:
            return
        self._append(values)
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
        """Evaluation numbers (`row` in fractions) as `eval/...` scalars in percent, like
        every other report of reidjax, and one printed line. The time spent evaluating is
        left out of the next clips/s and ETA."""
        self.last_step, self.last_time = step, time.perf_counter()
        if not self.active:
            return
        values = {f"eval/{k}": 100 * float(v) for k, v in row.items()}
        self._append({"step": step, **values})
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
        if self.board is not None:
            self.board.close()
