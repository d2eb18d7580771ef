"""What many tests read, made once per test run: a prepared dataset, a trained run.

With pytest-xdist every worker is its own process with its own session fixtures, so a
session fixture alone would train once per worker. `once` makes a folder under the test
run's common temporary root instead: the first worker that asks takes a file lock and
makes it, the others wait on the lock and read it. A folder is only ever read by the
tests; a test that must change a run copies it first (`copy_run`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pathlib
import shutil
from collections.abc import Callable

import ml_collections

from reidjax.config.config_lib import load_config
from reidjax.training import train_lib


def shared_root(tmp_path_factory) -> pathlib.Path:
    """The folder every worker of this test run sees: the parent of a worker's own
    temporary root under xdist (`.../pytest-N/popen-gw0` -> `.../pytest-N`)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "shared"
    root.mkdir(exist_ok=True)
    return root


def once(tmp_path_factory, name: str, make: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """`shared_root/name`, made by `make(folder)` by the first process that asks. A `make`
    that raised leaves no `.done` mark: the next process to ask tries again (and fails the
    same way, in its own test)."""
    root = shared_root(tmp_path_factory)
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)
            make(folder)
            done.touch()
    return folder


def copy_run(run: pathlib.Path, to: pathlib.Path) -> pathlib.Path:
    """A private copy of a shared run's folder, for a test that writes into it."""
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A smoke run trained to its last step and evaluated (`WORKDIR/eval`), read-only.

    Attributes:
        config: the config it was trained with (its data dir inside the shared folder).
        workdir: the run's folder.
    """

    config: ml_collections.ConfigDict
    workdir: pathlib.Path


def smoke_config(name: str, data_dir: pathlib.Path, **overrides) -> ml_collections.ConfigDict:
    """`configs/<name>.py:smoke` reading `data_dir`, with `section.key=value` overrides."""
    config = load_config(name, "smoke")
    with config.unlocked():
        config.dataset.data_dir = str(data_dir)
        for key, value in overrides.items():
            section, field = key.split(".")
            config[section][field] = value
    return config


def trained_run(
    tmp_path_factory,
    name: str,
    prepare: Callable[[ml_collections.ConfigDict, pathlib.Path], None] | None = None,
) -> TrainedRun:
    """`configs/<name>.py:smoke` trained and evaluated once per test run, in process (the
    default mesh: every visible device). `prepare(config, data_dir)` writes and builds the
    dataset first (the synthetic dataset builds itself)."""
    root = shared_root(tmp_path_factory) / name
    config = smoke_config(name, root / "data")

    def make(folder: pathlib.Path) -> None:
        if prepare is not None:
            prepare(config, folder / "data")
        train_lib.train_and_evaluate(config, str(folder / "run"))

    once(tmp_path_factory, name, make)
    return TrainedRun(config, root / "run")
