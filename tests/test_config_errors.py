"""Config mistakes end in one `error:` line, no traceback, within seconds and before any
dataset is read: the table of bad values a new user meets (README, docs/config.md)."""

import json
import pathlib
import subprocess
import sys

import pytest

from reidjax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SYNTHETIC = ["--config", "configs/synthetic.py"]

# (arguments of train.py, a fragment of the one error line)
BAD = [
    ([*SYNTHETIC, "--config.train.num_step=5"], "did you mean config.train.num_steps"),
    ([*SYNTHETIC, "--config.optim.learning_rate=0.1"], "did you mean config.optim.lr?"),
    ([*SYNTHETIC, "--config.train.max_steps=9"], "did you mean config.train.num_steps?"),
    ([*SYNTHETIC, "--config.model.name=resnet"], "config.model.name='resnet' is not one of"),
    ([*SYNTHETIC, "--config.dataset.name=market"], "config.dataset.name='market' is not one"),
    ([*SYNTHETIC, "--config.train.num_steps=ten"], "config.train.num_steps='ten' is not an int"),
    ([*SYNTHETIC, "--config.eval.rerank=maybe"], "must be true or false"),
    ([*SYNTHETIC, "--config.model.dsanet.tlm=false"], "loss_lr (L_L/R) needs tlm=True"),
    ([*SYNTHETIC, "--config.eval.distance=l2"], "config.eval.distance='l2' is not one of"),
    ([*SYNTHETIC, "--config.input.train_sampler=random"], "train_sampler='random'"),
    ([*SYNTHETIC, "--config.train.batch_sampler=pk"], "batch_sampler='pk' is not one of"),
    ([*SYNTHETIC, "--config.optim.lr=-1"], "config.optim.lr=-1.0 must be a finite number > 0"),
    ([*SYNTHETIC, "--config.optim.lr=0"], "config.optim.lr=0.0 must be a finite number > 0"),
    ([*SYNTHETIC, "--config.input.num_frames=0"], "config.input.num_frames=0 must be >= 1"),
    ([*SYNTHETIC, "--config.input.flip_prob=1.5"], "flip_prob=1.5 must be between 0 and 1"),
    ([*SYNTHETIC, "--config.model.variant=i3d"], "DSANet is built on the C2D backbone"),
    ([*SYNTHETIC, "--config.input.width=48"], "TLM splits the last feature map"),
    ([*SYNTHETIC, "--config.model.dtype=float16"], "config.model.dtype='float16' is not one"),
    ([*SYNTHETIC, "--config.mesh.data=3"], "not divisible by the 3 devices"),
    ([*SYNTHETIC, "--config.eval.batch_size=12"], "eval.batch_size=12 is not divisible by"),
    (["--config", "configs/strf_mars.py:smoke", "--config.model.variant=c2d"], "STRF needs"),
    (["--config", "configs/synthetic.py:smok"], "Unknown config variant 'smok'"),
    (["--config", "configs/nothing.py"], "no config file configs/nothing.py"),
    ([*SYNTHETIC, "--workdir", "README.md"], "the workdir README.md is a file"),
]


# Runs train.py's own `main` on each case in one process (one import of the library for
# the whole table): absl's flags are reset and parsed again per case, stderr captured.
DRIVER = """
import contextlib, io, json, sys
from absl import flags
import train
from reidjax import cli
out = []
for args in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    cli.parse_flags(["train.py", *args])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = train.main(["train.py"])
        except BaseException as e:  # a traceback: what the table must never show
            code, err = f"raised {type(e).__name__}: {e}", io.StringIO(err.getvalue())
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_bad_config_is_one_line_before_any_data(tmp_path):
    """Each mistake of `BAD`: train.py's main returns 1 with exactly one `error:` line on
    stderr holding the expected text, raises nothing, and builds nothing in the (empty)
    data dir: the config was refused before any dataset was opened. (How long each takes
    is measured, not asserted: a shared CI machine's timings are no bound.)"""
    data_dir = tmp_path / "data"
    cases = [[*args, f"--config.dataset.data_dir={data_dir}"] for args, _ in BAD]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for (args, message), (code, stderr) in zip(BAD, results, strict=True):
        lines = stderr.strip().splitlines()
        assert code == 1, (args, code, stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, stderr)
        assert message in lines[0], (args, lines[0])
    assert not data_dir.exists()  # no dataset was opened, built or written


@pytest.mark.parametrize(
    "args",
    [BAD[0][0], BAD[-1][0], [*SYNTHETIC, "--save-features"]],
    ids=["key typo", "workdir file", "unknown flag"],
)
def test_bad_config_exits_1_from_the_command_line(args, tmp_path):
    """The same, end to end through the interpreter: exit status 1, one line, no traceback
    (an unknown flag too: absl's parser error becomes the one line)."""
    command = [sys.executable, "train.py", *args, f"--config.dataset.data_dir={tmp_path}/d"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def test_help_exits_zero_and_eval_takes_overrides_without_config(tmp_path):
    """--help is not an error; eval.py applies --config.* to the run's own config.json."""
    done = subprocess.run(
        [sys.executable, "eval.py", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0 and "--workdir" in done.stdout and "--config" in done.stdout
    from reidjax.config import config_lib

    config = config_lib.load_config("synthetic", "smoke")
    (tmp_path / "config.json").write_text(config.to_json())
    done = subprocess.run(
        [sys.executable, "eval.py", "--workdir", str(tmp_path), "--print_config",
         "--config.eval.batch_size=16", "--config.eval.rerank"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "batch_size: 16" in done.stdout and "rerank: true" in done.stdout
    (tmp_path / "config.json").write_text('{"train": {"num_steps": "x"')
    done = subprocess.run(
        [sys.executable, "eval.py", "--workdir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("error: ")
    assert "config.json is not valid JSON" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["train"].update(num_steps="ten"), "train.num_steps='ten' must be of type int"),
        (lambda c: c["train"].update(num_steps=2.5), "train.num_steps=2.5 must be of type int"),
        (lambda c: c["train"].update(num_steps=None), "train.num_steps=None must be a number"),
        (lambda c: c.update(train=None), "train=None must be a section"),
        (lambda c: c["eval"].update(batch_size=-4), "eval.batch_size=-4 must be >= 1"),
        (lambda c: c["model"].update(name=[1]), "model.name=(1,) must be of type str"),
    ],
)
def test_a_damaged_run_config_names_the_file_and_the_key(tmp_path, edit, key):
    """eval.py --workdir reads WORKDIR/config.json: an edited or damaged value is one
    ConfigError naming the file and the key, never a traceback."""
    from reidjax.config import config_lib, run_config

    saved = json.loads(config_lib.load_config("synthetic", "smoke").to_json())
    edit(saved)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError) as caught:
        run_config.load_run_config(str(tmp_path))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "config.json")) and key in message, message
    assert "\n" not in message


@pytest.mark.parametrize("old, new", [(False, "none"), (True, "blocks")])
def test_a_run_config_of_the_boolean_remat_reads_as_its_mode(tmp_path, old, new):
    """Runs trained before `model.remat` named a mode wrote a bool: they still evaluate,
    with the mode that bool meant (True: each block recomputed)."""
    from reidjax.config import config_lib, run_config

    saved = json.loads(config_lib.load_config("synthetic", "smoke").to_json())
    saved["model"]["remat"] = old
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert run_config.load_run_config(str(tmp_path)).model.remat == new
    saved["model"]["remat"] = "sometimes"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"model\.remat"):
        run_config.load_run_config(str(tmp_path))


def test_overrides_parse_by_type():
    from reidjax.config import config_lib
    from reidjax.errors import ConfigError

    config = config_lib.load_config(
        "strf_mars",
        "smoke",
        [
            "optim.freeze=('backbone/conv1',)",
            "model.strf.resolutions=(1, 5)",
            "train.eval_every=-1",
            "optim.lr=2e-4",
            "eval.rerank",
            "model.temporal_blocks=none",
            "model.remat=none",
            "init.imagenet=none",
        ],
    )
    assert config.optim.freeze == ("backbone/conv1",) and config.model.strf.resolutions == (1, 5)
    assert config.train.eval_every == -1 and config.optim.lr == 2e-4 and config.eval.rerank
    assert config.model.temporal_blocks is None
    # `none` is None for a key that is not a string; a string key keeps the word.
    assert config.model.remat == "none" and config.init.imagenet == "none"
    with pytest.raises(ConfigError, match="resolutions must be odd"):
        config_lib.load_config("strf_mars", "smoke", ["model.strf.resolutions=(1, 4)"])
    with pytest.raises(ConfigError, match=r"the keys of config\.optim are"):
        config_lib.load_config("strf_mars", "smoke", ["optim.learning_rate_xyz=1"])
