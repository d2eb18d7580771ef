"""DSANet on LS-VID (842 training identities, 15 cameras) (DSANet paper, SPEC §3).

C2D ResNet-50 (last stride 1) with CEL, TLM, FWG and SAO. Recipe (§4.2): 8 ids × 4 clips,
restricted random sampling of T = 8 frames (T is not given in the paper), 256×128, flip +
random erasing (p = 0.5); Adam lr 3.5e-4 with coupled L2 5e-4, ×0.1 every 40 epochs, 200
epochs; losses Eqs. (9)–(10) with λ = 0.1, λ_cam = 0.5; batch-hard cosine triplet
(margin 0.3) on the pre-BN f_ID. Test: all frames of a tracklet in clips of T, clip
features (post-BN f_ID, L2-normalised) averaged, cosine distance.

    python tools/model_summary.py --config configs/dsanet_lsvid.py
    python train.py --config configs/dsanet_lsvid.py --workdir runs/dsanet_lsvid

Variants through the arg (comma-separated): `ablation=ROW` for a row of Table 2
(baseline, tlm_wo_lr, tlm, fwg_wo_w, fwg, tlm_fwg_wo_ic, tlm_fwg, full), `smoke` (tiny
model on 32×64 frames for tests).
Parameters: 30,819,984 (paper: 30.8M); the C2D baseline 25,237,386 (25.2M).
Published (DSANet Table 1): R1 85.1 / mAP 75.5; Table 2 (RRS evaluation): baseline
73.3 / 62.1, full 75.8 / 64.2.
"""

from reidjax.config_defaults import apply_variant, dsanet_recipe, dsanet_smoke, set_dsanet_ablation


def get_config(arg: str | None = None):
    config = dsanet_recipe("lsvid", lambda_cam=0.5)
    apply_variant(config, arg, {"smoke": dsanet_smoke}, {"ablation": set_dsanet_ablation})
    config.lock()
    return config
