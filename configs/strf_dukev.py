"""STRF-aided P3D-C ResNet-50 on DukeMTMC-VideoReID (702 training identities) (STRF paper).

STRF units (FAM + four FFMs, cascade temporal → spatial, (r_τ, r_ς) = (1, 3), max pooling)
on the input of the temporal conv of layer2 blocks {0, 2} and layer3 blocks {0, 2, 4}.
Recipe: `reidjax.config.recipes.strf_recipe`, which sets each of the paper's numbers.
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4; `python
tools/recipe.py --config configs/strf_dukev.py --config.dataset.data_dir=DIR` prints its steps,
the total and the decay steps for a prepared dataset.

    python tools/model_summary.py --config configs/strf_dukev.py
    python train.py --config configs/strf_dukev.py --workdir runs/strf_dukev

Variants through the arg (comma-separated): `backbone=i3d|p3da|p3db|p3dc`,
`stages=2+3` (STRF Table 5: any of 1-4 joined by '+'), `smoke` (tiny model for tests).
Parameters: STRF-P3D-C 25,695,998 (702-way classifier).
Published (STRF Tables 2-3): STRF-P3D-C R1 97.4 / mAP 96.4 (Table 3);
Table 2 mAP / R1 with STRF: I3D 95.2 / 95.9, P3D-A 95.6 / 96.0,
P3D-B 96.4 / 97.4, P3D-C 96.2 / 97.2.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import set_backbone, set_strf_stages, strf_recipe


def get_config(arg: str | None = None):
    config = strf_recipe("dukev")
    apply_variant(
        config, arg, {"smoke": smoke}, {"backbone": set_backbone, "stages": set_strf_stages}
    )
    config.lock()
    return config
