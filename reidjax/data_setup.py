"""A config's prepared dataset and what it tells the model (identities, cameras, size).

The synthetic dataset is built on first use (by process 0 first, so that hosts sharing a
file system write it once); every other dataset is prepared with `python -m input_pipeline
build` and a missing one stops the run with that command.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import ml_collections
import numpy as np

from input_pipeline import registry
from input_pipeline.build import build_dataset
from input_pipeline.builders import config_name
from input_pipeline.builders.reid_synthetic.reid_synthetic_dataset_builder import (
    synthetic_config,
)
from input_pipeline.records import ReIDDataset, dataset_dir
from reidjax.errors import ConfigError
from reidjax.training import hosts


@dataclasses.dataclass(frozen=True)
class DataMeta:
    """What the data tells the model builder (scenic's `dataset.meta_data`).

    Attributes:
        name: the dataset's name.
        num_train_ids: identities of the training split (classifier width).
        num_cameras: cameras (DSANet's camera classifier width).
        frame_size: (height, width) of the stored frames.
    """

    name: str
    num_train_ids: int
    num_cameras: int
    frame_size: tuple[int, int]

    @classmethod
    def of(cls, data: ReIDDataset) -> DataMeta:
        """The metadata of a prepared dataset (its training split)."""
        train = data.splits["train"]
        return cls(
            name=data.manifest["name"],
            num_train_ids=len(np.unique(train.pid)),
            num_cameras=int(max(train.camid.max(initial=0), 0) + 1),
            frame_size=tuple(data.size),
        )


def registry_meta(config: ml_collections.ConfigDict) -> DataMeta:
    """The published sizes of the config's benchmark, without reading any data (model
    summaries, shape checks, compiling ahead of time).

    Raises:
        ConfigError: a dataset whose sizes only its prepared data knows (your own).
    """
    spec = registry.get(config.dataset.name)
    if not spec.num_train_ids and not (config.model.num_classes and config.dataset.num_cameras):
        raise ConfigError(
            f"the sizes of a {spec.name} dataset come from its prepared data; give "
            "--config.model.num_classes and --config.dataset.num_cameras to size it without"
        )
    size = (config.input.height, config.input.width)
    return DataMeta(spec.name, spec.num_train_ids, spec.num_cameras, size)


def builder_config(config: ml_collections.ConfigDict) -> str:
    """The tensorflow-datasets builder config the config reads: the frame size, plus the
    folder dataset's name or the synthetic options. (iLIDS-VID's and PRID2011's ten
    train/test splits share one config: `config.dataset.split` picks the fold.)"""
    d, size = config.dataset, (config.input.height, config.input.width)
    if d.name == "synthetic":
        return synthetic_config(d.synthetic_ids, d.synthetic_cameras, config.seed, size)
    if d.name == "folder":
        return config_name(size, prefix=d.folder_name)
    return config_name(size)


def _build_synthetic_once(config: ml_collections.ConfigDict, name: str) -> None:
    data_dir = os.path.expanduser(config.dataset.data_dir)
    if os.path.isfile(os.path.join(dataset_dir("synthetic", name, data_dir), "dataset_info.json")):
        return
    print(f"building the synthetic dataset {name} in {data_dir} (once)...", flush=True)
    start = time.perf_counter()
    data = build_dataset("synthetic", name, data_dir, quiet=True)
    print(f"built {data.num_frames:,} frames in {time.perf_counter() - start:.1f} s", flush=True)


def open_dataset(config: ml_collections.ConfigDict) -> ReIDDataset:
    """The prepared dataset of the config.

    Raises:
        DatasetError: the dataset is not prepared in `config.dataset.data_dir` (the message
            gives the command that prepares it).
    """
    name = builder_config(config)
    if config.dataset.name == "synthetic":
        if jax.process_index() == 0:
            _build_synthetic_once(config, name)
        if jax.process_count() > 1:
            hosts.barrier("synthetic-dataset")  # a build takes longer than a collective waits
            _build_synthetic_once(config, name)  # hosts without a shared disk
    spec = registry.get(config.dataset.name)
    fold = config.dataset.split if spec.splits > 1 else 0
    data = ReIDDataset(config.dataset.name, name, config.dataset.data_dir, fold)
    if config.dataset.dense_train:
        data.cut_train(spec.dense_rule)
    return data


def open_data(config: ml_collections.ConfigDict) -> tuple[ReIDDataset, DataMeta]:
    """`open_dataset` and its metadata, checked against the config's frame size.

    Raises:
        ConfigError: the stored frames are not `config.input.height x width`.
    """
    data = open_dataset(config)
    meta = DataMeta.of(data)
    want = (config.input.height, config.input.width)
    if meta.frame_size != want:  # only a config name pointing at other frames can do this
        raise ConfigError(
            f"the frames of {data.directory} are {meta.frame_size[0]}x{meta.frame_size[1]} "
            f"but the config expects {want[0]}x{want[1]}"
        )
    return data, meta
