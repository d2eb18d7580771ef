"""Use a trained model: embed your own tracklets with the run's test rule.

    from reidjax.serving.inference import Embedder

    embedder = Embedder.from_workdir("runs/demo")            # or checkpoint="best" / 3000
    features = embedder.embed([["t1/0001.jpg", "t1/0002.jpg"], frames_uint8])  # [N, D]

The run's own `config.json` rebuilds the model and its test rule; only the parameters and
BN statistics of the checkpoint are read. `embed` runs the evaluator's own feature
extraction (`reidjax.evaluation.features.FeatureExtractor`):
the same dense clips (or the config's `rrs` clip), the same clip averaging over the frames
each clip covers, the same L2 normalisation, batched and sharded over the local devices,
compiled once for every tracklet length. Frames may be image files or uint8 arrays of any
size: each becomes exactly what a dataset build stores for it
(`input_pipeline.frames.prepare_frame`: resized bicubically and JPEG quality-95 encoded
unless already an RGB JPEG, or an array, at the run's size), so a tracklet gets the same
feature here as from `eval.py` on a dataset built from the same images. They are decoded
when their batch is read, so a large gallery never sits in memory decoded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from input_pipeline.frames import FrameError, prepare_frame
from input_pipeline.records import TrackletIndex
from reidjax import experiment
from reidjax.config import run_config
from reidjax.data_setup import DataMeta
from reidjax.errors import UserError
from reidjax.evaluation import metrics, thresholds
from reidjax.evaluation.features import FeatureExtractor
from reidjax.runtime import sharding
from reidjax.runtime.workdir import Workdir
from reidjax.training import restore

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
Tracklet = Sequence[str] | np.ndarray  # frame paths, or uint8 frames [L, h, w, 3]


class InputError(UserError, ValueError):
    """A tracklet that cannot be embedded (empty, an unreadable image); the message names it."""


def load_frame(frame: str | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One frame as uint8 `[H, W, 3]` at `size`, exactly as a dataset build would store
    it (`input_pipeline.frames.prepare_frame`).

    Raises:
        InputError: an unreadable image (named) or an array that is not uint8 `[h, w, 3]`.
    """
    try:
        return prepare_frame(frame, size)
    except FrameError as e:
        raise InputError(str(e)) from e


class TrackletFrames:
    """Tracklets given as frame lists: a `FrameSource` whose `index` spans them in order,
    decoding each frame when its batch is built."""

    def __init__(self, tracklets: Sequence[Tracklet], size: tuple[int, int], names=None):
        self.size, self.frames_list, first, count = tuple(size), [], [], []
        for i, tracklet in enumerate(tracklets):
            frames = list(tracklet)
            if not frames:
                name = names[i] if names is not None else f"tracklet {i}"
                raise InputError(f"{name} has no frames")
            first.append(len(self.frames_list))
            count.append(len(frames))
            self.frames_list += frames
        n = len(first)
        zeros = np.zeros(n, np.int64)
        self.index = TrackletIndex(
            zeros, np.arange(n), np.asarray(first, np.int64), np.asarray(count, np.int64)
        )

    def read_into(self, records, out: np.ndarray) -> np.ndarray:
        for k, record in enumerate(records):
            out[k] = load_frame(self.frames_list[int(record)], self.size)
        return out

    def frames(self, records) -> np.ndarray:
        records = np.asarray(records).reshape(-1)
        h, w = self.size
        return self.read_into(records, np.empty((len(records), h, w, 3), np.uint8))

    def frame(self, record: int) -> np.ndarray:
        return self.frames([record])[0]


@dataclasses.dataclass
class Embedder:
    """A trained model and its test rule, ready to embed tracklets.

    Attributes:
        config: the run's config (`WORKDIR/config.json`).
        model: the built `ReIDModel`.
        variables: parameters and BN statistics, replicated over the local devices.
        step: the checkpoint step.
    """

    config: ml_collections.ConfigDict
    model: object
    variables: dict
    step: int
    mesh: jax.sharding.Mesh
    workdir: str | None = None
    # Built at the first `embed`; later calls reuse its compiled step (no recompilation).
    extract: FeatureExtractor | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_workdir(
        cls, workdir: str, checkpoint: str | int = "latest", overrides: Sequence[str] = ()
    ) -> Embedder:
        """The model of a training run: `checkpoint` is "latest", "best" (the best-mAP
        checkpoint training kept) or a step number; `overrides` (`KEY=VALUE`, as
        `--config.KEY=VALUE`) change the run's config, e.g. `eval.batch_size=64`.

        Raises:
            ConfigError: no `config.json` in `workdir`.
            CheckpointNotFoundError: no such checkpoint.
        """
        config, model, mesh = cls._model_of(workdir, overrides)
        best = checkpoint == "best"
        step = None if checkpoint in ("latest", "best") else int(checkpoint)
        folder = Workdir(workdir).checkpoints(best)
        variables, restored = restore.restore_variables(model, config, folder, mesh, step)
        return cls(config, model, variables, restored, mesh, workdir)

    @classmethod
    def from_pretrained(
        cls, path_or_url: str, overrides: Sequence[str] = (), sha256: str | None = None
    ) -> Embedder:
        """The model of a release written by `reidjax/serving/make_release.py`: a `.tar` file, its
        unpacked folder, or an http(s)/file URL of the `.tar` (downloaded once into
        ~/.cache/reidjax/releases). Every file is checked against the release's checksums
        (and the whole archive against `sha256` when given) before anything is used.

        Raises:
            ReleaseError: a missing or damaged release, or a checksum that does not match.
        """
        from reidjax.serving import release

        folder, manifest = release.open_release(path_or_url, sha256)
        config, model, mesh = cls._model_of(folder, overrides)
        variables = release.read_weights(folder, model, config, mesh)
        return cls(config, model, variables, int(manifest["step"]), mesh, folder)

    @staticmethod
    def _model_of(folder: str, overrides: Sequence[str]):
        """(config, model, mesh) of the `config.json` in `folder`, sized as trained."""
        config = run_config.load_run_config(folder, overrides)
        devices = jax.local_device_count()
        with config.unlocked():  # any local device count: round the batch up to it
            config.mesh.data = devices
            config.eval.batch_size = -(-config.eval.batch_size // devices) * devices
        size = (config.input.height, config.input.width)
        meta = DataMeta(
            config.dataset.name, config.model.num_classes, config.dataset.num_cameras, size
        )
        return config, experiment.build(config, meta), sharding.make_mesh(config)

    @property
    def frame_size(self) -> tuple[int, int]:
        return (self.config.input.height, self.config.input.width)

    def embed(
        self, tracklets: Sequence[Tracklet], names: Sequence[str] | None = None, progress=None
    ) -> np.ndarray:
        """L2-normalised features `[N, D]` float32 of `tracklets` (each a list of frame
        paths or a uint8 array `[L, h, w, 3]`), by the run's test rule.

        Raises:
            InputError: an empty tracklet or an unreadable image, named.
        """
        data = TrackletFrames(tracklets, self.frame_size, names)
        if self.extract is None:
            self.extract = FeatureExtractor(
                self.model.predict, experiment.eval_spec(self.config), self.mesh
            )
        self.extract.progress = progress if jax.process_index() == 0 else None
        features = self.extract(self.variables, data, data.index, "embed")
        return features.astype(np.float32)


def same_person(
    embedder: Embedder, a: Tracklet, b: Tracklet, threshold: str | float = "auto"
) -> tuple[bool, float]:
    """Whether tracklets `a` and `b` show the same person: (distance ≤ threshold, the
    distance), the distance as the run evaluates (`eval.distance`). `threshold`: a distance
    or the run's operating point (`reidjax.evaluation.thresholds.run_threshold`: `auto` = the
    distance at a false-positive rate of 1e-3 in the run's last evaluation, `fpr_0.01`,
    `eer`)."""
    if not isinstance(threshold, int | float):
        if embedder.workdir is None:
            raise InputError("a named threshold needs an Embedder made by from_workdir")
        threshold = thresholds.run_threshold(embedder.workdir, threshold)
    fa, fb = embedder.embed([a, b])
    distance = float(
        metrics.pairwise_distances(fa[None], fb[None], embedder.config.eval.distance)[0, 0]
    )
    return distance <= threshold, distance


def tracklet_folders(root: str) -> tuple[list[str], list[list[str]]]:
    """The tracklets of a folder: (names, frame paths sorted by file name).

    Two layouts: one sub-folder of frames per tracklet (`root/<tracklet>/*.jpg`, named by
    the sub-folder), or a split of the dataset layout the folder builder reads
    (`root/<identity>/<camera>_<tracklet>/*.jpg`, named `<identity>/<camera>_<tracklet>`;
    `dataset_labels` reads identities and cameras from those names).

    Raises:
        InputError: a missing or empty folder, or a tracklet folder without images.
    """
    if not os.path.isdir(root):
        raise InputError(f"no folder {root}")
    names, tracklets = [], []
    for name in _subfolders(root):
        folder = os.path.join(root, name)
        frames = _images(folder)
        inner = _subfolders(folder) if not frames else []
        if not frames and not inner:
            raise InputError(
                f"tracklet folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})"
            )
        for sub in inner:  # the dataset layout: identity / camera_tracklet
            frames_of_sub = _images(os.path.join(folder, sub))
            if not frames_of_sub:
                raise InputError(
                    f"tracklet folder {os.path.join(folder, sub)} holds no image "
                    f"({', '.join(IMAGE_SUFFIXES)})"
                )
            names.append(f"{name}/{sub}")
            tracklets.append(frames_of_sub)
        if frames:
            names.append(name)
            tracklets.append(frames)
    if not tracklets:
        raise InputError(f"{root} holds no tracklet folder (one sub-folder of frames per tracklet)")
    return names, tracklets


def dataset_labels(names: dict[str, list[str]]) -> tuple[dict, list[str]] | None:
    """Identities and cameras from tracklet names of the dataset layout
    (`<identity>/<camera>_<tracklet>`), as the folder builder numbers them: integer
    identities keep their number (others numbered in sorted order), cameras numbered in
    sorted order over all splits. ({split: (pids, camids)}, camera names), or None when
    any name is not of that layout."""
    parts = {s: [n.split("/") for n in split] for s, split in names.items()}
    flat = [p for split in parts.values() for p in split]
    if not flat or any(len(p) != 2 or "_" not in p[1] for p in flat):
        return None
    identities = sorted({p[0] for p in flat})
    numeric = all(i.isdigit() for i in identities)
    pid_of = {i: int(i) if numeric else k for k, i in enumerate(identities)}
    cameras = sorted({p[1].split("_", 1)[0] for p in flat})
    cam_of = {c: k for k, c in enumerate(cameras)}
    out = {
        s: (
            np.asarray([pid_of[p[0]] for p in split]),
            np.asarray([cam_of[p[1].split("_", 1)[0]] for p in split]),
        )
        for s, split in parts.items()
    }
    return out, cameras


def _subfolders(root: str) -> list[str]:
    return sorted(
        n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)) and n[0] != "."
    )


def _images(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES)
    )
