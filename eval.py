"""Evaluates a trained video re-ID model on its config's test protocol.

    python eval.py --workdir runs/demo                 # the run's own config.json
    python eval.py --workdir runs/demo --rerank
    python eval.py --config configs/synthetic.py --workdir runs/demo --init   # untrained
    python eval.py --config configs/dsanet_lsvid.py   # workdir runs/dsanet_lsvid
    python eval.py --workdir runs/strf_mars --test_on ilidsvid   # cross-dataset

Restores the model variables of WORKDIR's latest checkpoint (or --step / --best; the
optimizer state is not read), runs every query and gallery tracklet through the model in
dense clips, prints R1/R5/R10/R20/mAP/mINP (percent) and writes results.json, cmc.png,
retrieval.png and attention.png (models with attention maps) to WORKDIR/eval/step<N>
(best-step<N>, init; _rerank with --rerank) or --output. Training's own report, in
WORKDIR/eval, is never overwritten. Without --config the run's
WORKDIR/config.json is used (its config, variant and overrides as trained); with it,
WORKDIR defaults to runs/<config name>[_<variant>], as in train.py.

`--test_on DATASET` tests the run's model on another dataset's protocol (train on MARS,
test on iLIDS-VID): the run's model, frame size and test rule, the other dataset's query
and gallery (prepared at the run's frame size; `--config.dataset.KEY=VALUE` sets its
options, e.g. folder_name or data_dir), iLIDS-VID and PRID2011 as the mean over their 10
test splits; reports in WORKDIR/eval/on_<dataset>.

iLIDS-VID and PRID2011 are reported as the mean over their 10 splits: put `{split}` in the
workdir, e.g. --workdir 'runs/strf_ilids/split{split}'; split K is evaluated in its own
workdir on its own prepared split (config.dataset.split = K), and the mean goes to the
common parent folder's eval/results.json.
"""

import os
import sys

from absl import app, flags

from reidjax import cli
from reidjax.evaluation import eval_lib, report

_CONFIG, _PRINT = cli.define_config_flags(
    "Experiment config file (default: WORKDIR/config.json, the run's own)"
)
flags.adopt_module_key_flags(cli)  # --config and --print_config show in --help
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training directory to evaluate (default: runs/<config name>)."
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Evaluate the best-mAP checkpoint of training.")
_INIT = flags.DEFINE_bool("init", False, "Evaluate the initial weights (no checkpoint).")
_RERANK = flags.DEFINE_bool("rerank", None, "k-reciprocal re-ranking (config.eval.rerank).")
_SAVE = flags.DEFINE_bool("save_features", False, "Also write features.npz to the report.")
_TEST_ON = flags.DEFINE_string(
    "test_on", None, "Cross-dataset: evaluate the run's model on this dataset's protocol."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Report folder (default: WORKDIR/eval/step<N>[_rerank], best-step<N>, init)."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    kwargs = dict(step=_STEP.value, best=_BEST.value, init=_INIT.value, rerank=_RERANK.value,
                  save_features=_SAVE.value, output=_OUTPUT.value)  # fmt: skip

    def run() -> int:
        workdir = cli.workdir_or_default(_WORKDIR.value)
        # Without --config: the config the run was trained with (WORKDIR/config.json); the
        # --config.KEY=VALUE overrides apply to either.
        config = cli.config(workdir.replace("{split}", "0"))
        if _PRINT.value:
            print(config)
            return 0
        if _TEST_ON.value:
            rows = eval_lib.evaluate_across(config, workdir, _TEST_ON.value, **kwargs)
        elif "{split}" in workdir:
            rows = eval_lib.evaluate_splits(config, workdir, **kwargs)
        else:
            numbers = eval_lib.evaluate_workdir(config, workdir, **kwargs)
            rows = {os.path.basename(os.path.normpath(workdir)): numbers}
        print(report.format_table(rows))
        return 0

    return cli.run_or_explain(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
