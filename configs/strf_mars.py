"""STRF-aided P3D-C ResNet-50 on MARS (625 training identities) (STRF paper).

STRF units (FAM + four FFMs, cascade temporal → spatial, (r_τ, r_ς) = (1, 3), max pooling)
on the input of the temporal conv of layer2 blocks {0, 2} and layer3 blocks {0, 2, 4}.
Recipe: `reidjax.config.recipes.strf_recipe`, which sets each of the paper's numbers.
Schedule: an epoch is one pass over the training tracklets in chunks of K = 4, ≈235 steps of
32 clips on MARS (`python tools/recipe.py --config configs/strf_mars.py
--config.dataset.data_dir=DIR` prints the exact count): 250 epochs ≈ 59k steps, learning rate
×0.1 every ≈11.7k steps.

    python tools/model_summary.py --config configs/strf_mars.py
    python train.py --config configs/strf_mars.py --workdir runs/strf_mars

Variants through the arg (comma-separated): `backbone=i3d|p3da|p3db|p3dc`,
`stages=2+3` (STRF Table 5: any of 1-4 joined by '+'), `smoke` (tiny model for tests).
Parameters: STRF-P3D-C 25,538,225 (25.53M, Table 2); STRF-I3D 28,978,865 (28.97M).
Published (STRF Tables 2-3): STRF-P3D-C R1 90.3 / mAP 86.1;
Table 2 mAP / R1 with STRF: I3D 83.1 / 88.7, P3D-A 85.4 / 89.8,
P3D-B 85.6 / 90.3, P3D-C 86.1 / 90.3.
"""

from reidjax.config.config_lib import apply_variant, smoke
from reidjax.config.recipes import set_backbone, set_strf_stages, strf_recipe


def get_config(arg: str | None = None):
    config = strf_recipe("mars")
    apply_variant(
        config, arg, {"smoke": smoke}, {"backbone": set_backbone, "stages": set_strf_stages}
    )
    config.lock()
    return config
