"""Dense training splits (`config.dataset.dense_train`) against the lineage's own loops."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from input_pipeline import registry
from input_pipeline.build import build_dataset
from input_pipeline.dense import DenseRule
from input_pipeline.records import TrackletIndex
from reidjax.config import config_lib
from reidjax.config.config_checks import validate
from reidjax.errors import ConfigError
from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ap3d_dense(frames, sampling_step, windows):
    """AP3D `tools/data_manager.py` as written: `_process_dir_dense` (Duke-V, pieces
    `[i*s:(i+1)*s]`) or `_process_train_data` (iLIDS-VID, windows `[i*s:(i+2)*s]`)."""
    tracklets = []
    num_sampling = len(frames) // sampling_step
    if num_sampling == 0:
        tracklets.append(frames)
    else:
        for idx in range(num_sampling):
            if idx == num_sampling - 1:
                tracklets.append(frames[idx * sampling_step :])
            elif windows:
                tracklets.append(frames[idx * sampling_step : (idx + 2) * sampling_step])
            else:
                tracklets.append(frames[idx * sampling_step : (idx + 1) * sampling_step])
    return tracklets


def ap3d_epoch_length(pids, num_instances):
    """AP3D `tools/samplers.py` `RandomIdentitySampler.length`: clips in an epoch."""
    length = 0
    for pid in set(pids):
        num = max(pids.count(pid), num_instances)
        length += num - num % num_instances
    return length


@pytest.mark.parametrize("dataset", ["dukev", "ilidsvid", "lsvid"])
def test_rule_equals_ap3d_loop(dataset):
    """Every piece (its frames, identity, camera and source) as the lineage's loop cuts the
    same tracklets, over lengths around every boundary."""
    rule = registry.get(dataset).dense_rule
    step, windows = (32, True) if dataset == "ilidsvid" else (64, False)
    assert (rule.step, rule.span) == (step, 2 if windows else 1)
    rng = np.random.default_rng(0)
    lengths = [1, 2, 31, 32, 33, 63, 64, 65, 95, 96, 127, 128, 129, 191, 192, 193, 700]
    lengths += rng.integers(1, 400, 60).tolist()
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    index = TrackletIndex(
        pid=np.arange(len(lengths)) % 7,
        camid=np.arange(len(lengths)) % 3,
        first=first,
        count=np.array(lengths),
        source=tuple(f"t{i}" for i in range(len(lengths))),
    )
    cut = rule.cut(index)
    want = []
    for i, n in enumerate(lengths):
        frames = list(range(first[i], first[i] + n))
        want += [(p, i) for p in ap3d_dense(frames, step, windows)]
    assert len(cut) == len(want)
    for k, (frames, owner) in enumerate(want):
        got = list(range(cut.first[k], cut.first[k] + cut.count[k]))
        assert got == frames, (k, lengths[owner])
        assert (cut.pid[k], cut.camid[k], cut.source[k]) == (
            index.pid[owner],
            index.camid[owner],
            f"t{owner}",
        )


def test_rule_errors_and_configs():
    with pytest.raises(ValueError, match="step >= 1"):
        DenseRule(0)
    assert not DenseRule(64).cut(TrackletIndex(*(np.zeros(0, np.int64) for _ in range(4)))).pid.size
    # The recipes: the lineage cuts every dataset but MARS.
    for name, dense in [
        ("strf_dukev", True), ("strf_ilidsvid", True), ("dsanet_dukev", True),
        ("dsanet_lsvid", True), ("strf_mars", False), ("dsanet_mars", False),
        ("synthetic", False),
    ]:  # fmt: skip
        assert config_lib.load_config(name).dataset.dense_train is dense, name
    config = config_lib.load_config("strf_mars")
    with config.unlocked():
        config.dataset.dense_train = True
    with pytest.raises(ConfigError, match=r"mars has no dense rule.*set it to False"):
        validate(config)


def write_long_dukev(root: str, lengths: dict) -> None:
    """A DukeMTMC-VideoReID layout whose training tracklets have the given lengths
    ({pid: [length, ...]}); one short query and gallery tracklet each."""
    rng = np.random.default_rng(0)
    spec = {"train": lengths, "query": {900: [3]}, "gallery": {900: [2], 901: [2]}}
    for split, people in spec.items():
        for pid, tracklets in people.items():
            for t, n in enumerate(tracklets):
                cam = 1 + (t + (split == "gallery")) % 8
                folder = os.path.join(root, split, f"{pid:04d}", f"{t + 1:04d}")
                for f in range(1, n + 1):
                    name = f"{pid:04d}_C{cam}_F{f:04d}_X{f:05d}.jpg"
                    fixtures.write_image(os.path.join(folder, name), rng, (4, 4))


@pytest.mark.slow
def test_recipe_counts_dense_pieces_as_the_lineage(tmp_path):
    """tools/recipe.py on strf_dukev and a Duke-V-layout dataset with long tracklets:
    training tracklets and steps per epoch equal AP3D's dense rule followed by AP3D's
    sampler length, both computed here from the frame counts alone; off, the whole ones."""
    lengths = {
        1: [10, 64, 65, 130],
        2: [200, 63],
        3: [128, 129, 300],
        4: [5],
        5: [191, 192, 193, 64, 1],
    }
    write_long_dukev(str(tmp_path / "raw"), lengths)
    build_dataset("dukev", "32x32", str(tmp_path / "tfds"), str(tmp_path / "raw"), workers=1)

    def recipe(*extra):
        out = subprocess.run(
            [
                sys.executable, "tools/recipe.py", "--config", "configs/strf_dukev.py",
                f"--config.dataset.data_dir={tmp_path / 'tfds'}", "--config.input.height=32",
                "--config.input.width=32", "--config.train.ids_per_batch=2", *extra,
            ],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout, json.loads(out.stdout.strip().splitlines()[-1])

    pieces = [p for p, ts in lengths.items() for n in ts for _ in ap3d_dense([0] * n, 64, False)]
    stdout, numbers = recipe()
    assert numbers["tracklets"] == len(pieces) == 28
    assert numbers["whole_tracklets"] == 15
    assert numbers["steps_per_epoch"] == ap3d_epoch_length(pieces, 4) // 8 == 3
    assert "28 training tracklets (dense pieces of 15 tracklets) of 5 identities" in stdout

    whole = [p for p, ts in lengths.items() for _ in ts]
    _, numbers = recipe("--config.dataset.dense_train=false")
    assert numbers["tracklets"] == numbers["whole_tracklets"] == 15
    assert numbers["steps_per_epoch"] == ap3d_epoch_length(whole, 4) // 8 == 2
