"""Prints what a config will do on a prepared dataset, before any accelerator is rented.

    python tools/recipe.py --config configs/strf_mars.py --config.dataset.data_dir=/data/tfds
    python tools/recipe.py --config configs/synthetic.py

Opens the dataset (nothing is compiled or trained) and prints the training tracklets and
identities, steps per epoch (the batch sampler's count: with the default `tracklets`
sampler one pass over the tracklets in chunks of K), total steps and epochs, the steps at
which the learning rate decays, the number of frames the run will decode, the optimizer
and where the weights start from. train.py prints the same lines at start-up. The last
line is one JSON object with the numbers.
"""

import json
import sys

from absl import app, flags

from reidjax import cli, experiment

_CONFIG, _PRINT = cli.define_config_flags("Experiment config file")
flags.adopt_module_key_flags(cli)


def main(argv):
    del argv

    def run() -> int:
        config = cli.config()
        meta, plan = experiment.plan_only(config)
        o = config.optim
        sampler = config.train.batch_sampler
        print(f"{config.model.name} on {meta.name}, batch sampler {sampler!r}")
        print("\n".join(plan.lines()))
        print(
            f"optimizer: {o.name} lr {o.lr:g}, weight decay {o.weight_decay:g}, "
            f"x{o.lr_decay_factor:g} every {o.lr_decay_every_epochs} epochs; "
            f"init: {config.init.imagenet}"
        )
        numbers = {
            "tracklets": plan.tracklets,
            "whole_tracklets": plan.whole_tracklets or plan.tracklets,
            "identities": plan.identities,
            "steps_per_epoch": plan.steps_per_epoch,
            "epochs": plan.total_steps / plan.steps_per_epoch,
            "total_steps": plan.total_steps,
            "decay_steps": [s for s in plan.decay_steps if s < plan.total_steps],
            "frames_decoded": plan.frames_decoded,
        }
        print(json.dumps(numbers))
        return 0

    return cli.run_or_explain(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
