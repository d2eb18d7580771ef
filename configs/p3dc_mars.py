"""P3D-C ResNet-50 baseline on MARS (STRF paper Table 2 "P3DC").

conv2 of layer2 blocks {0,2} and layer3 blocks {0,2,4} becomes s = S(x); s + T(s) with a
zero-initialised (3,1,1) temporal conv T. Parameters: 25,480,881 (25.48M, as in Table 2).
`:backbone=p3da` / `:backbone=p3db` give the other P3D baselines (same size).
`:nonlocal` adds AP3D's five Non-Local blocks (layer2 blocks 1, 3; layer3 blocks 1, 3, 5),
the "P3D-C + NL" of STRF §3.3 (published MARS mAP / R1 84.8 / 89.9): 32,839,345 parameters,
7,358,464 more than the baseline (the paper says "~5 million").
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4, ≈235 steps of
32 clips on MARS (`python tools/recipe.py --config configs/p3dc_mars.py
--config.dataset.data_dir=DIR` prints the exact count): 250 epochs ≈ 59k steps, learning rate
×0.1 every ≈11.7k steps.

    python tools/model_summary.py --config configs/p3dc_mars.py
    python train.py --config configs/p3dc_mars.py --workdir runs/p3dc_mars

Published (STRF Table 2), MARS mAP / R1: P3D-A 83.2 / 88.9, P3D-B 83.0 / 88.8,
P3D-C 83.1 / 88.5; DukeMTMC-VideoReID: P3D-A 95.0 / 95.0, P3D-B 95.4 / 95.3, P3D-C 95.3 / 95.3.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import baseline_recipe, set_backbone, set_nonlocal


def get_config(arg: str | None = None):
    config = baseline_recipe("mars", "p3dc")
    apply_variant(
        config, arg, {"smoke": smoke, "nonlocal": set_nonlocal}, {"backbone": set_backbone}
    )
    config.lock()
    return config
