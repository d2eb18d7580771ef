"""How much PyTorch's unbiased running variance changes a post-BN test feature.

    python bench/bn_unbiased_variance.py --config configs/synthetic.py --workdir runs/demo

reidjax's BatchNorm updates the running variance with the unbiased batch variance
(×n/(n−1)), as torch does; Flax's BatchNorm uses the biased one. For the head's BN1d n is
the batch (32), and every update is scaled by the same factor, so a biased running
variance is exactly (n−1)/n of the unbiased one. This restores a trained checkpoint,
evaluates it with the post-BN test feature as trained and with the head BN's running
variance ×(n−1)/n (what a biased update would have given), and prints R1/mAP of both and
the largest cosine distance between the two features of a tracklet. One JSON line.
"""

import json
import sys

import jax
import numpy as np
from absl import app, flags

from reidjax import cli, experiment
from reidjax.evaluation.evaluator import Evaluator
from reidjax.runtime import sharding
from reidjax.runtime.workdir import Workdir
from reidjax.training import restore

_CONFIG, _PRINT = cli.define_config_flags("Experiment config file (default: the run's own)")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    return cli.run_or_explain(compare)


def compare() -> int:
    config = cli.config(_WORKDIR.value)
    with config.unlocked():
        config.model.dsanet.test_feature = "bn_features"  # where the head BN reaches the feature
    run = experiment.setup(config, train=False)
    data, mesh, model = run.data, run.mesh, run.model
    folder = Workdir(_WORKDIR.value).checkpoints()
    variables, step = restore.restore_variables(model, config, folder, mesh)
    n = config.train.ids_per_batch * config.train.clips_per_id
    biased = jax.device_get(variables)
    biased["batch_stats"]["bn"]["var"] = biased["batch_stats"]["bn"]["var"] * (n - 1) / n
    biased = jax.device_put(biased, sharding.replicated(mesh))
    evaluator = Evaluator(model.predict, run.eval, data, mesh, progress=None)
    results = [evaluator.evaluate(v) for v in (variables, biased)]
    qa, qb = results[0].query_features, results[1].query_features
    ga, gb = results[0].gallery_features, results[1].gallery_features
    cos = np.concatenate([np.sum(qa * qb, 1), np.sum(ga * gb, 1)])
    out = {"step": step, "batch": n, "max_cosine_distance": float(1 - cos.min())}
    for name, r in zip(("unbiased", "biased"), results, strict=True):
        row = r.table_row()
        out[name] = {"R1": round(100 * row["R1"], 2), "mAP": round(100 * row["mAP"], 3)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
