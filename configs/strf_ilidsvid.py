"""STRF-aided P3D-C ResNet-50 on iLIDS-VID (STRF paper).

150 training identities per split; results are the mean over the 10 splits.

STRF units (FAM + four FFMs, cascade temporal → spatial, (r_τ, r_ς) = (1, 3), max pooling)
on the input of the temporal conv of layer2 blocks {0, 2} and layer3 blocks {0, 2, 4}.
Recipe: `reidjax.config.recipes.strf_recipe`, which sets each of the paper's numbers.
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4; `python
tools/recipe.py --config configs/strf_ilidsvid.py --config.dataset.data_dir=DIR` prints its
steps, the total and the decay steps for a prepared dataset.

    python tools/model_summary.py --config configs/strf_ilidsvid.py
    python train.py --config configs/strf_ilidsvid.py --workdir runs/strf_ilidsvid

Variants through the arg (comma-separated): `backbone=i3d|p3da|p3db|p3dc`,
`stages=2+3` (STRF Table 5: any of 1-4 joined by '+'), `smoke` (tiny model for tests).
Parameters: STRF-P3D-C 24,564,950 (150-way classifier).
Published (STRF Table 3): STRF-P3D-C R1 89.3.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import set_backbone, set_strf_stages, strf_recipe


def get_config(arg: str | None = None):
    config = strf_recipe("ilidsvid")
    apply_variant(
        config, arg, {"smoke": smoke}, {"backbone": set_backbone, "stages": set_strf_stages}
    )
    config.lock()
    return config
