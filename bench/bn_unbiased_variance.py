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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from reidjax import experiment, sharding
from reidjax.evaluator import Evaluator

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    config = _CONFIG.value
    with config.unlocked():
        config.model.dsanet.test_feature = "bn_features"  # where the head BN reaches the feature
    data, meta = experiment.open_data(config)
    mesh = sharding.make_mesh(config)
    model = experiment.build(config, meta)
    folder = os.path.join(_WORKDIR.value, "checkpoints")
    variables, step = experiment.restore_variables(model, config, folder, mesh)
    n = config.train.ids_per_batch * config.train.clips_per_id
    biased = jax.device_get(variables)
    biased["batch_stats"]["bn"]["var"] = biased["batch_stats"]["bn"]["var"] * (n - 1) / n
    biased = jax.device_put(biased, sharding.replicated(mesh))
    evaluator = Evaluator(model.predict, config, data, mesh, progress=None)
    results = [evaluator.evaluate(v) for v in (variables, biased)]
    qa, qb = results[0].query_features, results[1].query_features
    ga, gb = results[0].gallery_features, results[1].gallery_features
    cos = np.concatenate([np.sum(qa * qb, 1), np.sum(ga * gb, 1)])
    out = {"step": step, "batch": n, "max_cosine_distance": float(1 - cos.min())}
    for name, r in zip(("unbiased", "biased"), results, strict=True):
        row = r.table_row()
        out[name] = {"R1": round(100 * row["R1"], 2), "mAP": round(100 * row["mAP"], 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
