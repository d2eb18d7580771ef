"""Evaluates a trained video re-ID model on its config's test protocol (SPEC §4, §6).

    python eval.py --config configs/dsanet_lsvid.py --workdir runs/dsanet_lsvid
    python eval.py --config configs/synthetic.py --workdir runs/demo --rerank
    python eval.py --config configs/synthetic.py --workdir runs/demo --init   # untrained

Restores the latest checkpoint of WORKDIR (or --step / --best), runs every query and
gallery tracklet through the model in dense clips, prints R1/R5/R10/R20/mAP/mINP and
writes WORKDIR/eval/{results.json, cmc.png, retrieval.png, attention.png (DSANet)}.

iLIDS-VID is reported as the mean over its 10 splits: put `{split}` in the workdir and the
dataset folder, e.g. --workdir 'runs/strf_ilids/split{split}'
--config.dataset.dir='/data/ilids_rec_split{split}'; each split is evaluated in its own
workdir and the mean goes to the common parent folder's eval/results.json.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory to evaluate.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Evaluate the best-mAP checkpoint of training.")
_INIT = flags.DEFINE_bool("init", False, "Evaluate the initial weights (no checkpoint).")
_RERANK = flags.DEFINE_bool("rerank", None, "k-reciprocal re-ranking (config.eval.rerank).")
_SAVE = flags.DEFINE_bool("save-features", False, "Also write eval/features.npz.")
_OUTPUT = flags.DEFINE_string("output", None, "Report folder (default: WORKDIR/eval).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from input_pipeline.datasets.ilidsvid import NUM_SPLITS
    from reidjax import train_lib
    from reidjax.evaluator import evaluate_workdir, format_table
    from reidjax.metrics import EvaluationError

    config, workdir = _CONFIG.value, _WORKDIR.value
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax/jax INFO lines hide the results
    train_lib.maybe_initialize_distributed()
    kwargs = dict(step=_STEP.value, best=_BEST.value, init=_INIT.value, rerank=_RERANK.value,
                  save_features=_SAVE.value)  # fmt: skip
    try:
        if "{split}" not in workdir:
            numbers = evaluate_workdir(config, workdir, output=_OUTPUT.value, **kwargs)
            print(format_table({os.path.basename(os.path.normpath(workdir)): numbers}))
            return 0
        rows = {}
        for split in range(NUM_SPLITS):
            split_config = config.copy_and_resolve_references()
            with split_config.unlocked():
                split_config.dataset.dir = config.dataset.dir.replace("{split}", str(split))
            rows[f"split {split}"] = evaluate_workdir(
                split_config, workdir.replace("{split}", str(split)), **kwargs
            )
    except (FileNotFoundError, EvaluationError, ValueError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    keys = ("R1", "R5", "R10", "R20", "mAP", "mINP")
    rows["mean"] = {k: sum(r[k] for r in rows.values()) / NUM_SPLITS for k in keys}
    print(format_table(rows))
    parent = os.path.commonpath([workdir.replace("{split}", str(s)) for s in (0, 1)])
    out = _OUTPUT.value or os.path.join(parent, "eval")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"mean": rows.pop("mean"), "splits": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
