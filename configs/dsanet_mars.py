"""DSANet on MARS (625 training identities, 6 cameras) (DSANet paper).

C2D ResNet-50 (last stride 1) with CEL, TLM, FWG and SAO.
Recipe: `reidjax.config.recipes.dsanet_recipe`, which sets each of the paper's numbers.
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4, ≈235 steps of
32 clips on MARS (`python tools/recipe.py --config configs/dsanet_mars.py
--config.dataset.data_dir=DIR` prints the exact count): 200 epochs ≈ 47k steps, learning rate
×0.1 every ≈9.4k steps.

    python tools/model_summary.py --config configs/dsanet_mars.py
    python train.py --config configs/dsanet_mars.py --workdir runs/dsanet_mars

Variants through the arg (comma-separated): `ablation=ROW` for a row of Table 2
(baseline, tlm_wo_lr, tlm, fwg_wo_w, fwg, tlm_fwg_wo_ic, tlm_fwg, full), `smoke` (tiny
model on 32×64 frames for tests).
Parameters: 29,467,644 (paper: 29.5M).
Published (DSANet Table 1): R1 91.1 / mAP 86.6.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import dsanet_recipe, set_dsanet_ablation


def get_config(arg: str | None = None):
    config = dsanet_recipe("mars")
    apply_variant(config, arg, {"smoke": smoke}, {"ablation": set_dsanet_ablation})
    config.lock()
    return config
