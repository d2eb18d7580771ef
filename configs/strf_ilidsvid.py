"""STRF-aided P3D-C ResNet-50 on iLIDS-VID (STRF paper, SPEC §2).

150 training identities per split; results are the mean over the 10 splits.

STRF units (FAM + four FFMs, cascade temporal → spatial, (r_τ, r_ς) = (1, 3), max pooling)
on the input of the temporal conv of layer2 blocks {0, 2} and layer3 blocks {0, 2, 4}.
Recipe (STRF supp. §C): CE + cosine batch-hard triplet (margin 0.3) on the post-BN
feature; Adam lr 3e-4 with coupled L2 5e-4, 250 epochs, ×0.1 every 50; 8 ids × 4 clips of
4 frames at stride 8, 256×128, flip + random erasing; test: consecutive 4-frame clips,
features averaged, cosine distance.

    python tools/model_summary.py --config configs/strf_ilidsvid.py
    python train.py --config configs/strf_ilidsvid.py --workdir runs/strf_ilidsvid

Variants through the arg (comma-separated): `backbone=i3d|p3da|p3db|p3dc`,
`stages=2+3` (STRF Table 5: any of 1-4 joined by '+'), `smoke` (tiny model for tests).
Parameters: STRF-P3D-C 24,564,950 (150-way classifier).
Published (STRF Table 3): STRF-P3D-C R1 89.3.
"""

from reidjax.config_defaults import apply_variant, set_backbone, set_strf_stages, smoke, strf_recipe


def get_config(arg: str | None = None):
    config = strf_recipe("ilidsvid")
    apply_variant(
        config, arg, {"smoke": smoke}, {"backbone": set_backbone, "stages": set_strf_stages}
    )
    config.lock()
    return config
