"""`CONFIG:smoke` trains and evaluates end to end for every config in configs/.

The dataset configs run on tiny fixtures in each dataset's native layout, ingested at the
smoke frame size; the synthetic config generates its own data.
"""

import json
import pathlib

import jax
import pytest

from input_pipeline.datasets import load_dataset
from input_pipeline.ingest import ingest
from reidjax import train_lib
from reidjax.config_lib import load_config
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
def datasets(tmp_path_factory):
    """`(dataset, height, width) -> ingested folder`, made on first use."""
    root = tmp_path_factory.mktemp("smoke_data")
    made = {}

    def get(name: str, height: int, width: int) -> str:
        key = (name, height, width)
        if key not in made:
            raw = root / f"{name}_raw"
            if not raw.exists():
                WRITERS[name](str(raw))
            out = root / f"{name}_{height}x{width}"
            ingest(load_dataset(name, str(raw)), str(out), (height, width), workers=1)
            made[key] = str(out)
        return made[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_trains_and_evaluates(name, datasets, tmp_path):
    config = load_config(name, "smoke")
    with config.unlocked():
        if config.dataset.name == "synthetic":
            config.dataset.dir = str(tmp_path / "data")
        else:
            i = config.input
            config.dataset.dir = datasets(config.dataset.name, i.height, i.width)
        # 2 devices: still a sharded data-parallel run; the 8-device partitioning adds
        # ~40% compile time per config and is covered by tests/test_train.py.
        config.mesh.data = 2
    state = train_lib.train_and_evaluate(config, str(tmp_path))
    assert int(state.step) == config.train.num_steps
    assert all(jax.tree.leaves(jax.tree.map(lambda x: bool(jax.numpy.isfinite(x).all()), state)))
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert 0 <= results["mAP"] <= 100 and results["step"] == config.train.num_steps
    assert (tmp_path / "eval" / "retrieval.png").stat().st_size > 0
