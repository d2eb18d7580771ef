"""Configs (validation, variants, locked keys) and the command-line tools."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from input_pipeline.build import build_dataset
from reidjax.config import config_lib
from reidjax.errors import ConfigError
from reidjax.experiment import build_module
from reidjax.models.factory import dummy_clips
from reidjax.models.summary import count_params
from tests import fixtures

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.py") if not p.name.startswith("_"))


def load_config(path, arg=None):
    return config_lib.load_config(str(path), arg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_builds_and_has_a_smoke_variant(path):
    config = load_config(path)
    build_module(config)
    assert path.read_text().startswith('"""'), "docstring with the command"
    smoke = load_config(path, "smoke")
    assert smoke.model.arch == "tiny" and smoke.input.height == 32
    assert 0 < smoke.train.num_steps <= 4
    build_module(smoke)


def test_config_typos_fail_loudly():
    config = load_config(ROOT / "configs" / "p3dc_mars.py")
    with pytest.raises(AttributeError):
        config.model.varient = "i3d"
    with pytest.raises(ValueError, match="Unknown config variant 'smok'"):
        load_config(ROOT / "configs" / "p3dc_mars.py", "smok")
    assert load_config(ROOT / "configs" / "p3dc_mars.py", "backbone=p3db").model.variant == "p3db"


def test_dsanet_table2_rows_are_evaluated_with_rrs():
    lsvid = ROOT / "configs" / "dsanet_lsvid.py"
    assert load_config(lsvid).input.test_sampler == "dense"
    row = load_config(lsvid, "ablation=tlm_fwg")
    assert row.input.test_sampler == "rrs"
    assert not row.model.dsanet.sao and row.model.dsanet.fwg


def test_unknown_dataset_lists_valid_names():
    config = load_config(ROOT / "configs" / "c2d_mars.py")
    config.dataset.name = "market"
    with pytest.raises(
        ValueError,
        match=r"valid: \['dukev', 'folder', 'ilidsvid', 'lsvid', 'mars', 'prid2011', 'synthetic'\]",
    ):
        build_module(config)


def run_tool(*args, env=None):
    env = dict(os.environ) if env is None else env
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, check=False
    )


@pytest.mark.parametrize(
    "config, params",
    [
        ("configs/i3d_mars.py", 28_921_521),
        ("configs/strf_mars.py", 25_538_225),  # STRF Table 2: 25.53M
        ("configs/strf_mars.py:backbone=i3d", 28_978_865),  # 28.97M
        ("configs/dsanet_mars.py", 29_467_644),  # DSANet: 29.5M
        ("configs/dsanet_lsvid.py", 30_819_984),  # 30.8M
        ("configs/dsanet_lsvid.py:ablation=baseline", 25_237_386),  # 25.2M
    ],
)
def test_model_summary_full_size_counts(config, params):
    """The count the tool prints, by shape in process (the tool itself: below)."""
    path, _, arg = config.partition(":")
    model_config = config_lib.load_config(path, arg or None)
    model = build_module(model_config)
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(model_config))
    assert count_params(shapes["params"]) == params


def test_model_summary_tool_prints_the_breakdown_and_the_count():
    result = run_tool("tools/model_summary.py", "--config", "configs/strf_mars.py", "--noflops")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "params: 25538225"
    assert "total" in result.stdout and "backbone" in result.stdout


def test_model_summary_reports_flops_on_smoke_config():
    """Run as on a user's machine, where JAX_PLATFORMS is not set: on this CPU-only machine
    JAX does not try libtpu (installed with the test requirements), so the command prints
    its own lines only, none about a TPU."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    result = run_tool("tools/model_summary.py", "--config", "configs/p3dc_mars.py:smoke", env=env)
    assert result.returncode == 0, result.stderr
    assert "TPU" not in result.stderr and "tpu" not in result.stderr, result.stderr[-2000:]
    assert "flops per clip" in result.stdout
    gflops = float(result.stdout.split("flops per clip (inference forward, XLA): ")[1].split()[0])
    assert gflops > 0


def test_train_py_missing_weights_says_what_to_download(tmp_path):
    missing = run_tool(
        "train.py",
        "--config",
        "configs/synthetic.py:smoke",
        "--workdir",
        str(tmp_path / "run"),
        f"--config.dataset.data_dir={tmp_path / 'data'}",
        "--config.init.imagenet=/nonexistent/resnet50_imagenet.npz",
    )
    assert missing.returncode == 1
    assert "Weight file not found" in missing.stderr and "Traceback" not in missing.stderr
    # The synthetic dataset was built first, in spawned processes: JAX's threads were running.
    assert "building the synthetic dataset" in missing.stdout
    assert "os.fork()" not in missing.stderr
    assert "resnet50-19c8e357.pth" in missing.stderr
    assert "--config.init.imagenet=none" in missing.stderr
    assert (tmp_path / "run" / "config.json").exists()


def test_unknown_config_key_on_command_line_fails():
    """What `eval.py --config configs/c2d_mars.py:smoke --config.model.varient=i3d` loads
    (its one-line error: tests/test_config_errors.py)."""
    with pytest.raises(ConfigError, match="varient"):
        config_lib.load_config("configs/c2d_mars.py:smoke", overrides=["model.varient=i3d"])


def test_command_line_overrides_parse_as_the_flax_examples_do():
    """The forms `config_flags` takes, through the command-line parser train.py uses: a
    value after `=` or after a space, bare and negated booleans, a tuple as a literal or as
    repeated flags, `none` for None (not for a string key), and the last of a key wins."""
    from reidjax import cli

    rest, overrides = cli.split_overrides(
        ["train.py", "--workdir", "w", "--config.train.num_steps", "7", "--config.eval.rerank",
         "--noconfig.loss.fwg_frame_ce", "--config.optim.lr=0.5",
         "--config.optim.freeze=backbone/conv1", "--config.optim.freeze=backbone/layer1",
         "--config.model.nonlocal_blocks=((), (0,), (0,), ())", "--config.optim.lr=2",
         "--config.model.temporal_blocks=((0,), (0,), (0,), ())",
         "--config.model.temporal_blocks=none", "--config.init.imagenet=none"]
    )  # fmt: skip
    assert rest == ["train.py", "--workdir", "w"]
    assert overrides[:3] == ["config.train.num_steps=7", "config.eval.rerank",
                             "config.loss.fwg_frame_ce=false"]  # fmt: skip
    config = config_lib.load_config("configs/strf_mars.py:smoke", overrides=overrides)
    assert config.train.num_steps == 7 and config.eval.rerank is True
    assert config.loss.fwg_frame_ce is False and config.optim.lr == 2.0
    assert config.optim.freeze == ("backbone/conv1", "backbone/layer1")
    assert config.model.nonlocal_blocks == ((), (0,), (0,), ())
    assert config.model.temporal_blocks is None  # the arch's default again
    assert config.init.imagenet == "none"  # a string key keeps the word
    with pytest.raises(ConfigError, match=r"config\.input\.height='tall' is not an int"):
        config_lib.load_config("synthetic", "smoke", ["input.height=tall"])
    with pytest.raises(ConfigError, match=r"config\.eval\.rerank='2' must be true or false"):
        config_lib.load_config("synthetic", "smoke", ["eval.rerank=2"])


def test_recipe_tool_prints_the_plan(tmp_path):
    """tools/recipe.py on a full-size recipe and a prepared MARS-layout dataset: steps per
    epoch are the lineage sampler's, the decays fall on 50-epoch boundaries, and frames
    decoded = steps x clips x frames; train.py prints the same numbers."""
    fixtures.write_mars(str(tmp_path / "raw"))
    build_dataset("mars", "256x128", str(tmp_path / "tfds"), str(tmp_path / "raw"), workers=1)
    out = run_tool(
        "tools/recipe.py", "--config", "configs/strf_mars.py",
        f"--config.dataset.data_dir={tmp_path / 'tfds'}", "--config.train.ids_per_batch=1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    numbers = json.loads(out.stdout.strip().splitlines()[-1])
    # 3 training ids with 1, 2 and 4 tracklets: each fills one chunk of K = 4 -> 3 steps
    assert numbers["steps_per_epoch"] == 3 and numbers["tracklets"] == 7
    assert numbers["total_steps"] == 250 * 3
    assert numbers["decay_steps"] == [150, 300, 450, 600]
    assert numbers["frames_decoded"] == 750 * 4 * 4
    assert "3 steps per epoch of 4 clips x 4 frames" in out.stdout


def test_config_reference_is_current_and_help_shows_common_keys():
    """docs/config.md is what `python -m reidjax.config.config_reference` prints (regenerate it
    after changing the schema); every key has a description; --help lists the common keys
    and --print_config prints the config with the overrides, without running."""
    from reidjax.config import config_reference

    page = (ROOT / "docs" / "config.md").read_text()
    assert page == config_reference.render(), (
        "regenerate: python -m reidjax.config.config_reference"
    )
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert len(rows) == len(config_reference.flat_defaults())
    assert all(not row.endswith("|  |") for row in rows), [r for r in rows if r.endswith("|  |")]
    helped = run_tool("train.py", "--help")
    for key in config_reference.COMMON_KEYS:
        assert f"--config.{key}=" in helped.stdout
    printed = run_tool(
        "train.py", "--config", "configs/strf_mars.py:smoke", "--print_config",
        "--config.optim.lr=0.5",
    )  # fmt: skip
    assert (
        printed.returncode == 0 and "lr: 0.5" in printed.stdout and "name: strf" in printed.stdout
    )
    assert "workdir:" not in printed.stdout  # nothing ran


def test_search_ids_file(tmp_path):
    """reidjax.serving.search --ids: integer identities keep their number, named ones are numbered;
    cameras come from the third column; split prefixes disambiguate; missing rows are named."""
    from reidjax.serving.inference import InputError
    from reidjax.serving.search import read_ids

    path = tmp_path / "ids.txt"
    path.write_text("# tracklet identity camera\nq1 7 north\nquery/a 9 south\ngallery/a 7 south\n")
    names = {"query": ["q1", "a"], "gallery": ["a"]}
    ids, cameras = read_ids(str(path), names)
    np.testing.assert_array_equal(ids["query"][0], [7, 9])
    np.testing.assert_array_equal(ids["gallery"][0], [7])
    assert [cameras[c] for c in ids["query"][1]] == ["north", "south"]
    assert [cameras[c] for c in ids["gallery"][1]] == ["south"]
    path.write_text("q1 alice\nquery/a bob\ngallery/a alice\n")
    ids, cameras = read_ids(str(path), names)
    np.testing.assert_array_equal(ids["query"][0], [0, 1])
    np.testing.assert_array_equal(ids["gallery"][0], [0])
    np.testing.assert_array_equal(ids["query"][1], [0, 0])  # no cameras: query 0, gallery 1
    np.testing.assert_array_equal(ids["gallery"][1], [1])
    with pytest.raises(InputError, match="does not list the gallery tracklet 'b'"):
        read_ids(str(path), {"query": ["q1"], "gallery": ["b"]})


def test_compute_dtype_auto_follows_the_platform():
    import jax.numpy as jnp

    from reidjax.models.factory import compute_dtype

    assert config_lib.base_config().model.dtype == "auto"
    assert compute_dtype("auto", "cpu") == jnp.float32
    assert compute_dtype("auto", "gpu") == compute_dtype("auto", "tpu") == jnp.bfloat16
    assert compute_dtype("auto") == jnp.float32  # the test machines are CPU-only
    with pytest.raises(ValueError, match="or auto"):
        compute_dtype("float16")


def test_config_walk_counts_each_read_where_it_is_made(monkeypatch):
    """tools/config_walk.py's recorder: a read is the module that asked, the config's own
    package is counted apart, and `experiment.eval_spec` reads exactly its 17 keys
    (`input` and `eval`, then 7 and 8 fields of them)."""
    import collections
    import importlib.util

    import ml_collections

    from reidjax import experiment

    spec = importlib.util.spec_from_file_location("config_walk", ROOT / "tools/config_walk.py")
    walk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(walk)
    for name in ("__getattr__", "__getitem__"):  # restored after the test
        monkeypatch.setattr(
            ml_collections.ConfigDict, name, getattr(ml_collections.ConfigDict, name)
        )
    reads = []
    walk.record(reads)
    config = config_lib.load_config("synthetic", "smoke")
    made = len(reads)
    experiment.eval_spec(config)
    loading = set(reads[:made])  # the config package, and the model checks it runs
    assert {"reidjax.config.config_lib", "reidjax.config.config_checks"} <= loading
    assert {m for m in loading if m.startswith(walk.MAKERS)} >= loading - {"reidjax.models.factory"}
    assert collections.Counter(reads[made:]) == {"reidjax.experiment": 17}
