"""DSANet on DukeMTMC-VideoReID (702 training identities, 8 cameras) (DSANet paper).

C2D ResNet-50 (last stride 1) with CEL, TLM, FWG and SAO.
Recipe: `reidjax.config.recipes.dsanet_recipe`, which sets each of the paper's numbers.
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4; `python
tools/recipe.py --config configs/dsanet_dukev.py --config.dataset.data_dir=DIR` prints its steps,
the total and the decay steps for a prepared dataset.

    python tools/model_summary.py --config configs/dsanet_dukev.py
    python train.py --config configs/dsanet_dukev.py --workdir runs/dsanet_dukev

Variants through the arg (comma-separated): `ablation=ROW` for a row of Table 2
(baseline, tlm_wo_lr, tlm, fwg_wo_w, fwg, tlm_fwg_wo_ic, tlm_fwg, full), `smoke` (tiny
model on 32×64 frames for tests).
Parameters: 29,945,061 (paper: 30M).
Published (DSANet Table 1): R1 97.2 / mAP 96.6.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import dsanet_recipe, set_dsanet_ablation


def get_config(arg: str | None = None):
    config = dsanet_recipe("dukev")
    apply_variant(config, arg, {"smoke": smoke}, {"ablation": set_dsanet_ablation})
    config.lock()
    return config
