"""STRF-aided P3D-C ResNet-50 on DukeMTMC-VideoReID (702 training identities) (STRF paper, SPEC §2).

STRF units (FAM + four FFMs, cascade temporal → spatial, (r_τ, r_ς) = (1, 3), max pooling)
on the input of the temporal conv of layer2 blocks {0, 2} and layer3 blocks {0, 2, 4}.
Recipe (STRF supp. §C): CE + cosine batch-hard triplet (margin 0.3) on the post-BN
feature; Adam lr 3e-4 with coupled L2 5e-4, 250 epochs, ×0.1 every 50; 8 ids × 4 clips of
4 frames at stride 8, 256×128, flip + random erasing; test: consecutive 4-frame clips,
features averaged, cosine distance.

    python tools/model_summary.py --config configs/strf_dukev.py
    python train.py --config configs/strf_dukev.py --workdir runs/strf_dukev

Variants through the arg (comma-separated): `backbone=i3d|p3da|p3db|p3dc`,
`stages=2+3` (STRF Table 5: any of 1-4 joined by '+'), `smoke` (tiny model for tests).
Parameters: STRF-P3D-C 25,695,998 (702-way classifier).
Published (STRF Tables 2-3): STRF-P3D-C R1 97.4 / mAP 96.4 (Table 3);
Table 2 mAP / R1 with STRF: I3D 95.2 / 95.9, P3D-A 95.6 / 96.0,
P3D-B 96.4 / 97.4, P3D-C 96.2 / 97.2.
"""

from reidjax.config_defaults import apply_variant, set_backbone, set_strf_stages, smoke, strf_recipe


def get_config(arg: str | None = None):
    config = strf_recipe("dukev")
    apply_variant(
        config, arg, {"smoke": smoke}, {"backbone": set_backbone, "stages": set_strf_stages}
    )
    config.lock()
    return config
