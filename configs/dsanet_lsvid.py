"""DSANet on LS-VID (842 training identities, 15 cameras) (DSANet paper).

C2D ResNet-50 (last stride 1) with CEL, TLM, FWG and SAO.
Recipe: `reidjax.config.recipes.dsanet_recipe`, which sets each of the paper's numbers.
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4; `python
tools/recipe.py --config configs/dsanet_lsvid.py --config.dataset.data_dir=DIR` prints its steps,
the total and the decay steps for a prepared dataset.

    python tools/model_summary.py --config configs/dsanet_lsvid.py
    python train.py --config configs/dsanet_lsvid.py --workdir runs/dsanet_lsvid

Variants through the arg (comma-separated): `ablation=ROW` for a row of Table 2
(baseline, tlm_wo_lr, tlm, fwg_wo_w, fwg, tlm_fwg_wo_ic, tlm_fwg, full), `smoke` (tiny
model on 32×64 frames for tests).
Parameters: 30,819,984 (paper: 30.8M); the C2D baseline 25,237,386 (25.2M).
Published (DSANet Table 1): R1 85.1 / mAP 75.5; Table 2 (RRS evaluation): baseline
73.3 / 62.1, full 75.8 / 64.2.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import dsanet_recipe, set_dsanet_ablation


def get_config(arg: str | None = None):
    config = dsanet_recipe("lsvid", lambda_cam=0.5)
    apply_variant(config, arg, {"smoke": smoke}, {"ablation": set_dsanet_ablation})
    config.lock()
    return config
