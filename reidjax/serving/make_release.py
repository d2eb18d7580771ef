"""Package a trained run as one release file: config, weights (safetensors), results, checksums.

    reidjax-release --workdir runs/demo --out releases/ [--checkpoint best] [--name demo]

Writes `OUT/<name>.tar` and `OUT/<name>.tar.sha256` (`reidjax/serving/release.py` says what the
archive holds). Load it with

    from reidjax.serving.inference import Embedder
    embedder = Embedder.from_pretrained("releases/demo.tar")   # or an https:// URL of it

which checks every checksum, rebuilds the model from the config and loads the weights: no
workdir, no orbax checkpoint, no training code path.
"""

import datetime
import json
import os

from absl import app, flags

from reidjax import cli
from reidjax.errors import UserError
from reidjax.runtime import workdir_io
from reidjax.runtime.workdir import Workdir
from reidjax.serving import release
from reidjax.serving.inference import Embedder

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run.", required=True)
_OUT = flags.DEFINE_string("out", None, "Folder for the release file.", required=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, best or a step.")
_NAME = flags.DEFINE_string("name", None, "File name (default: <run folder>-step<N>).")


def make_release(workdir: str, out: str, checkpoint: str = "latest", name: str | None = None):
    """Writes the release of `workdir`'s checkpoint into `out`; returns its path."""
    embedder = Embedder.from_workdir(workdir, checkpoint)
    results_path = os.path.join(Workdir(workdir).eval(), "results.json")
    if not workdir_io.exists(results_path):
        raise UserError(f"{results_path} is missing: evaluate the run first (train.py does)")
    results = json.loads(workdir_io.read_text(results_path))
    config = embedder.config
    meta = {
        "model": config.model.name, "arch": config.model.arch, "step": embedder.step,
        "trained_on": config.dataset.name, "checkpoint": checkpoint,
        "frame_size": [config.input.height, config.input.width],
        "num_frames": config.input.num_frames,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    name = name or f"{os.path.basename(os.path.normpath(workdir))}-step{embedder.step}"
    os.makedirs(out, exist_ok=True)
    config_json = workdir_io.read_text(Workdir(workdir).config)
    return release.write_release(embedder.variables, config_json, results, meta, out, name)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")

    def run() -> int:
        path = make_release(_WORKDIR.value, _OUT.value, _CHECKPOINT.value, _NAME.value)
        size = os.path.getsize(path) / 2**20
        print(f"wrote {path} ({size:.1f} MiB) and {path}.sha256")
        return 0

    return cli.run_or_explain(run)


def run() -> None:
    """The console command (`[project.scripts]` in pyproject.toml)."""
    cli.console(main)


if __name__ == "__main__":
    run()
