"""A run folder's layout, named once: every path reidjax reads or writes in a workdir.

WORKDIR/config.json          the config as run (what eval.py and inference read)
WORKDIR/checkpoints/<step>   train-state checkpoints (orbax)
WORKDIR/checkpoints_best/    the best-mAP checkpoint of the periodic evaluation
WORKDIR/checkpoints_damaged/ unreadable steps moved aside (never deleted)
WORKDIR/metrics.jsonl        one JSON row per logged step and evaluation
WORKDIR/tensorboard/         the same as TensorBoard events
WORKDIR/eval/                training's final report; eval.py's next to it
WORKDIR/.lock                held by the running trainer
"""

from __future__ import annotations

import dataclasses
import os

from reidjax.errors import ConfigError
from reidjax.runtime import workdir_io

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
BEST = "checkpoints_best"
DAMAGED_SUFFIX = "_damaged"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
EVAL = "eval"
SEARCH = "search"
PROFILE = "profile"
LOCK = ".lock"


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one run folder (a local path or a `gs://` bucket folder)."""

    root: str

    def __post_init__(self):
        if not self.root:
            raise ConfigError("the workdir is empty: give --workdir DIR")
        local = workdir_io.is_local(self.root)
        if local and os.path.exists(self.root) and not os.path.isdir(self.root):
            raise ConfigError(f"the workdir {self.root} is a file, not a folder")

    @classmethod
    def of(cls, workdir: Workdir | str) -> Workdir:
        """`workdir` as a `Workdir` (a path or one already)."""
        return workdir if isinstance(workdir, Workdir) else cls(str(workdir))

    def __str__(self) -> str:
        return self.root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def config(self) -> str:
        return self.path(CONFIG)

    def checkpoints(self, best: bool = False) -> str:
        """The checkpoints folder (`best`: the best-mAP one)."""
        return self.path(BEST if best else CHECKPOINTS)

    @property
    def metrics(self) -> str:
        return self.path(METRICS)

    @property
    def tensorboard(self) -> str:
        return self.path(TENSORBOARD)

    @property
    def lock(self) -> str:
        return self.path(LOCK)

    def eval(self, tag: str = "") -> str:
        """Training's report folder, or eval.py's `eval/<tag>` (e.g. `step300_rerank`)."""
        return self.path(EVAL, tag) if tag else self.path(EVAL)

    @property
    def search(self) -> str:
        return self.path(SEARCH)

    @property
    def profile(self) -> str:
        """Where `config.train.profile_steps` writes its profiler trace."""
        return self.path(PROFILE)


def damaged(checkpoints: str) -> str:
    """Where the unreadable steps of a checkpoints folder are moved."""
    return checkpoints.rstrip("/") + DAMAGED_SUFFIX


def checkpoints_of(path: str) -> str:
    """A workdir's checkpoints folder for `path` given as the workdir itself, or the path
    unchanged (a checkpoints folder or a step folder)."""
    candidate = os.path.join(path, CHECKPOINTS)
    return candidate if workdir_io.exists(candidate) else path
