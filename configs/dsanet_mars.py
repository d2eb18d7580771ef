"""DSANet on MARS (625 training identities, 6 cameras) (DSANet paper, SPEC §3).

C2D ResNet-50 (last stride 1) with CEL, TLM, FWG and SAO. Recipe (§4.2): 8 ids × 4 clips,
restricted random sampling of T = 8 frames (T is not given in the paper), 256×128, flip +
random erasing (p = 0.5); Adam lr 3.5e-4 with coupled L2 5e-4, ×0.1 every 40 epochs, 200
epochs; losses Eqs. (9)–(10) with λ = 0.1, λ_cam = 0.1; batch-hard cosine triplet
(margin 0.3) on the pre-BN f_ID. Test: all frames of a tracklet in clips of T, clip
features (post-BN f_ID, L2-normalised) averaged, cosine distance.

    python tools/model_summary.py --config configs/dsanet_mars.py
    python train.py --config configs/dsanet_mars.py --workdir runs/dsanet_mars

Variants through the arg (comma-separated): `ablation=ROW` for a row of Table 2
(baseline, tlm_wo_lr, tlm, fwg_wo_w, fwg, tlm_fwg_wo_ic, tlm_fwg, full), `smoke` (tiny
model on 32×64 frames for tests).
Parameters: 29,467,644 (paper: 29.5M).
Published (DSANet Table 1): R1 91.1 / mAP 86.6.
"""

from reidjax.config_defaults import apply_variant, dsanet_recipe, dsanet_smoke, set_dsanet_ablation


def get_config(arg: str | None = None):
    config = dsanet_recipe("mars")
    apply_variant(config, arg, {"smoke": dsanet_smoke}, {"ablation": set_dsanet_ablation})
    config.lock()
    return config
