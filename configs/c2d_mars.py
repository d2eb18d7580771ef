"""C2D ResNet-50 baseline on MARS (625 training identities).

Parameters: 24,792,753 (trunk + BN1d 23.51M + 625-way classifier).
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4, ≈235 steps of
32 clips on MARS (`python tools/recipe.py --config configs/c2d_mars.py
--config.dataset.data_dir=DIR` prints the exact count): 250 epochs ≈ 59k steps, learning rate
×0.1 every ≈11.7k steps.

    python tools/model_summary.py --config configs/c2d_mars.py
    python train.py --config configs/c2d_mars.py --workdir runs/c2d_mars

Variants through the arg: `configs/c2d_mars.py:smoke` (tiny model, 32×64 frames, T=2).
Published: the two papers report no C2D number on MARS (DSANet's C2D baseline reaches
R1 73.3 / mAP 62.1 on LS-VID, DSANet Table 2).
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import baseline_recipe


def get_config(arg: str | None = None):
    config = baseline_recipe("mars", "c2d")
    apply_variant(config, arg, {"smoke": smoke})
    config.lock()
    return config
