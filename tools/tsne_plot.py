"""t-SNE maps of a trained run's tracklet features (DSANet Fig. 7), and the features saved.

    python tools/tsne_plot.py --workdir runs/demo --out runs/demo/tsne
    python tools/tsne_plot.py --workdir runs/demo --outputs test,f_cam --ids 20

Embeds the test tracklets (query and gallery) of the run's dataset with the evaluator's own
rule (dense clips, clip features averaged over frames, L2-normalised), once per model output
in `--outputs`: `test` is the run's test feature (what the evaluator ranks with); a DSANet
run also has `f_cam`, the camera feature of its camera branch (`features` / `bn_features`
of any family, pre- and post-BN, work too). The
tracklets of the `--ids` identities with the most tracklets are mapped to 2-D with
`reidjax.evaluation.tsne` and drawn one panel per output, coloured by identity (marker: camera).
Writes `OUT/tsne.png` and `OUT/features.npz` (every output's features of every test
tracklet, their identity, camera and split, and the 2-D points), and prints where.
"""

import json
import os
import sys

import jax
import numpy as np
from absl import app, flags

from reidjax import cli, experiment
from reidjax.data_setup import open_dataset
from reidjax.errors import ConfigError
from reidjax.evaluation.features import FeatureExtractor
from reidjax.evaluation.tsne import tsne
from reidjax.models.factory import normalize
from reidjax.serving.inference import Embedder

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_OUT = flags.DEFINE_string("out", "", "Output folder (default WORKDIR/tsne).")
_OUTPUTS = flags.DEFINE_list("outputs", ["test"], "Outputs to map: test, f_cam (DSANet), ...")
_IDS = flags.DEFINE_integer("ids", 20, "Identities drawn (those with the most tracklets).")
_PERPLEXITY = flags.DEFINE_float("perplexity", 30.0, "t-SNE perplexity.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest | best | a step.")
_SEED = flags.DEFINE_integer("seed", 0, "t-SNE seed.")
flags.mark_flag_as_required("workdir")

MARKERS = "osD^v<>ph*"


def output_features(embedder: Embedder, data, index, output: str) -> np.ndarray:
    """L2-normalised tracklet features of one model output, by the run's test rule (the
    test feature exactly as the evaluator pools it, e.g. DSANet's FWG over every frame)."""
    module = embedder.model.module

    def predict(variables, clips):
        return module.apply(variables, normalize(clips), train=False)[output]

    if output == embedder.model.test_feature:
        predict = embedder.model.predict

    extract = FeatureExtractor(
        predict, experiment.eval_spec(embedder.config), embedder.mesh, progress=None
    )
    return extract(embedder.variables, data, index, output)


def draw(points: dict, pids: np.ndarray, camids: np.ndarray, path: str, title: str) -> None:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(5.2 * len(points), 5.4), dpi=110)
    axes = fig.subplots(1, len(points), squeeze=False)[0]
    colours = {p: i for i, p in enumerate(np.unique(pids))}
    cmap = matplotlib.colormaps["tab20"]
    for ax, (name, y) in zip(axes, points.items(), strict=True):
        for cam in np.unique(camids):
            keep = camids == cam
            ax.scatter(
                y[keep, 0], y[keep, 1], s=22, marker=MARKERS[int(cam) % len(MARKERS)],
                c=[cmap(colours[p] % 20) for p in pids[keep]], edgecolors="none",
            )  # fmt: skip
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Line2D([], [], ls="", marker=MARKERS[int(c) % len(MARKERS)], color="0.3", ms=5,
               label=f"camera {int(c) + 1}")
        for c in np.unique(camids)
    ]  # fmt: skip
    axes[0].legend(handles=handles, fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def main(argv):
    del argv

    def run() -> int:
        embedder = Embedder.from_workdir(_WORKDIR.value, _CHECKPOINT.value)
        data = open_dataset(embedder.config)
        out = _OUT.value or os.path.join(_WORKDIR.value, "tsne")
        os.makedirs(out, exist_ok=True)
        c = embedder.config.input
        x = jax.ShapeDtypeStruct((1, c.num_frames, c.height, c.width, 3), np.uint8)
        available = jax.eval_shape(
            lambda v, c: embedder.model.module.apply(v, normalize(c), train=False),
            embedder.variables, x,
        )  # fmt: skip
        test = embedder.model.test_feature
        names = [test if n == "test" else n for n in _OUTPUTS.value]
        for name in names:
            if name not in available or available[name].ndim != 2:
                vectors = sorted(k for k, v in available.items() if v.ndim == 2)
                raise ConfigError(
                    f"--outputs {name}: not a feature of this model; one of {vectors}"
                )
        splits = ("query", "gallery")
        pids = np.concatenate([data.splits[s].pid for s in splits])
        camids = np.concatenate([data.splits[s].camid for s in splits])
        split = np.concatenate([np.full(len(data.splits[s]), i) for i, s in enumerate(splits)])
        feats = {}
        for name in names:
            feats[name] = np.concatenate(
                [output_features(embedder, data, data.splits[s], name) for s in splits]
            )
        ids, counts = np.unique(pids[pids >= 0], return_counts=True)
        chosen = ids[np.argsort(-counts, kind="stable")[: _IDS.value]]
        keep = np.isin(pids, chosen)
        points = {}
        for name, f in feats.items():
            perplexity = min(_PERPLEXITY.value, (keep.sum() - 1) / 3)
            points[name] = tsne(f[keep], perplexity, seed=_SEED.value)
        title = (
            f"{embedder.config.model.name} step {embedder.step}: {keep.sum()} test tracklets "
            f"of {len(chosen)} identities (colour), markers by camera"
        )
        draw(points, pids[keep], camids[keep], os.path.join(out, "tsne.png"), title)
        np.savez(
            os.path.join(out, "features.npz"), pid=pids, camid=camids, split=split,
            drawn=keep, **feats, **{f"tsne_{k}": v for k, v in points.items()},
        )  # fmt: skip
        print(f"wrote {out}/tsne.png and {out}/features.npz ({', '.join(feats)})")
        summary = {"tracklets": len(pids), "drawn": int(keep.sum()), "outputs": list(feats)}
        print(json.dumps(summary))
        return 0

    return cli.run_or_explain(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
