"""`CONFIG:smoke` trains and evaluates end to end for every config in configs/.

The dataset configs run on tiny fixtures in each dataset's native layout, built by their
tensorflow-datasets builders at the smoke frame size; the synthetic config builds its own.
"""

import json
import pathlib

import jax
import pytest

from reidjax import train_lib
from reidjax.config_lib import load_config
from reidjax.data.build import build_dataset
from reidjax.data.open import builder_config
from tests import fixtures

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py"))
WRITERS = {
    "mars": fixtures.write_mars,
    "dukev": fixtures.write_dukev,
    "lsvid": fixtures.write_lsvid,
    "ilidsvid": fixtures.write_ilidsvid,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A TFDS data dir holding each fixture dataset at the configs' frame size, built on
    first use: `prepare(config)` builds what `config` reads."""
    root = tmp_path_factory.mktemp("smoke_data")

    def prepare(config) -> str:
        name = config.dataset.name
        raw = root / f"{name}_raw"
        if not raw.exists():
            WRITERS[name](str(raw))
        build_dataset(name, builder_config(config), str(root / "tfds"), str(raw), workers=1)
        return str(root / "tfds")

    return prepare


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_trains_and_evaluates(name, data_dir, tmp_path):
    config = load_config(name, "smoke")
    with config.unlocked():
        if config.dataset.name == "synthetic":
            config.dataset.data_dir = str(tmp_path / "data")
        else:
            config.dataset.data_dir = data_dir(config)
        # 2 devices: still a sharded data-parallel run; the 8-device partitioning adds
        # ~40% compile time per config and is covered by tests/test_train.py.
        config.mesh.data = 2
    state = train_lib.train_and_evaluate(config, str(tmp_path))
    assert int(state.step) == config.train.num_steps
    assert all(jax.tree.leaves(jax.tree.map(lambda x: bool(jax.numpy.isfinite(x).all()), state)))
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert 0 <= results["mAP"] <= 100 and results["step"] == config.train.num_steps
    assert (tmp_path / "eval" / "retrieval.png").stat().st_size > 0
