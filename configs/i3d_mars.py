"""I3D ResNet-50 baseline on MARS (STRF paper Table 2 "I3D").

(3,3,3) conv2 in layer2 blocks {0,2} and layer3 blocks {0,2,4}, centre-initialised from
ImageNet. Parameters: 28,921,521 (28.92M, as in Table 2).
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4, ≈235 steps of
32 clips on MARS (`python tools/recipe.py --config configs/i3d_mars.py
--config.dataset.data_dir=DIR` prints the exact count): 250 epochs ≈ 59k steps, learning rate
×0.1 every ≈11.7k steps.

    python tools/model_summary.py --config configs/i3d_mars.py
    python train.py --config configs/i3d_mars.py --workdir runs/i3d_mars

Published (STRF Table 2): MARS mAP 82.7 / R1 88.5; DukeMTMC-VideoReID mAP 95.2 / R1 95.4.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import baseline_recipe


def get_config(arg: str | None = None):
    config = baseline_recipe("mars", "i3d")
    apply_variant(config, arg, {"smoke": smoke})
    config.lock()
    return config
