"""The built-in default: DSANet on the synthetic dataset, trained on a CPU.

    python train.py --config configs/synthetic.py --workdir runs/demo

No download and no ImageNet weights: the synthetic dataset (200 procedural identities, 100
for training and 100 for testing, 4 cameras, 128×64 frames; input_pipeline/synthetic.py)
is built on first use by its tensorflow-datasets builder into
~/tensorflow_datasets/reid_synthetic/ids200_cams4_seed0_128x64 (or
--config.dataset.data_dir), in about 10 s on 2 cores. The model is DSANet on the `tiny`
trunk, trained from scratch with Adam at lr 1e-3 for 300 steps, so that it trains on a
2-core CPU. It is evaluated at step 150 and 300 (R1/mAP in the log, the best checkpoint in
WORKDIR/checkpoints_best); after the last step eval.py's report goes to WORKDIR/eval.
`:smoke` runs a few steps on a smaller dataset.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import dsanet_recipe


def synthetic_smoke(config):
    """The library's smoke run on 16 synthetic identities, 4 steps of 4 ids x 2 clips."""
    smoke(config)
    config.dataset.synthetic_ids = 16
    config.train.ids_per_batch, config.train.clips_per_id = 4, 2
    config.train.num_steps = 4
    config.train.log_every = 2
    config.train.checkpoint_every = 2


def get_config(arg: str | None = None):
    config = dsanet_recipe("synthetic")
    config.model.arch = "tiny"
    config.input.height, config.input.width = 128, 64
    config.input.num_frames = 4
    config.train.num_steps = 300
    config.train.log_every = 10
    config.train.checkpoint_every = 100
    config.train.eval_every = 150
    config.init.imagenet = "none"  # from scratch: the tiny trunk has no ImageNet weights
    config.optim.lr = 1e-3  # from scratch; see docs/benchmarks.md
    apply_variant(config, arg, {"smoke": synthetic_smoke})
    config.lock()
    return config
