"""The papers' training recipes and the `:key=value` variants of their configs.

Each recipe sets every number it depends on explicitly (not through the schema's
defaults), so a recipe reads as the paper's implementation paragraph.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from reidjax.config.config_lib import base_config
from reidjax.errors import ConfigError
from reidjax.models.dsanet import DSANetConfig
from reidjax.models.resnet3d import get_arch

# DSANet's ablation switches: the boolean fields of `DSANetConfig`.
DSANET_SWITCHES = tuple(
    f.name for f in dataclasses.fields(DSANetConfig) if isinstance(f.default, bool)
)


# Datasets the lineage trains on dense pieces (AP3D `train.py`: every dataset but MARS, on
# `train_dense`; LS-VID as the same group's BiCnet-TKS cuts it). PRID2011 is not in AP3D.
LINEAGE_DENSE = ("dukev", "ilidsvid", "lsvid")


def set_step_adam(
    config: ml_collections.ConfigDict, lr: float, weight_decay: float, decay_every_epochs: int
) -> None:
    """Adam with L2 coupled into the gradient (torch.optim.Adam's weight_decay), the
    learning rate x0.1 every `decay_every_epochs` epochs: both papers' optimizer."""
    config.optim.name = "adam"
    config.optim.lr = lr
    config.optim.weight_decay = weight_decay
    config.optim.lr_decay_every_epochs = decay_every_epochs
    config.optim.lr_decay_factor = 0.1


def baseline_recipe(dataset: str, variant: str) -> ml_collections.ConfigDict:
    """An inflated ResNet-50 baseline (`variant`: c2d | i3d | p3da | p3db | p3dc) with the
    STRF papers' baseline recipe (the same as `strf_recipe`, without STRF units)."""
    config = strf_recipe(dataset)
    config.model.name = "baseline"
    config.model.variant = variant
    return config


def strf_recipe(dataset: str) -> ml_collections.ConfigDict:
    """STRF-P3D-C with the STRF supplementary §C recipe on `dataset`."""
    config = base_config()
    config.dataset.name = dataset
    config.dataset.dense_train = dataset in LINEAGE_DENSE
    config.model.name = "strf"
    config.model.variant = "p3dc"
    config.input.num_frames = 4
    config.input.train_sampler = "stride"
    config.input.frame_stride = 8
    config.train.ids_per_batch, config.train.clips_per_id = 8, 4
    config.train.epochs = 250
    config.loss.triplet_feature = "bn_features"
    config.loss.triplet_margin = 0.3
    set_step_adam(config, lr=3e-4, weight_decay=5e-4, decay_every_epochs=50)
    return config


def dsanet_recipe(dataset: str, lambda_cam: float = 0.1) -> ml_collections.ConfigDict:
    """DSANet with the recipe of its §4.2 on `dataset` (λ_cam = 0.5 on LS-VID).

    T = 8 is not given in the paper (its lineage's clip length for restricted random
    sampling); see docs/dsanet.md.
    """
    config = base_config()
    config.dataset.name = dataset
    # DSANet's text and code say nothing of it; its lineage trains these on dense pieces
    # (docs/fidelity.md).
    config.dataset.dense_train = dataset in LINEAGE_DENSE
    config.model.name = "dsanet"
    config.model.variant = "c2d"
    config.input.num_frames = 8
    config.input.train_sampler = "rrs"
    config.train.ids_per_batch, config.train.clips_per_id = 8, 4
    config.train.epochs = 200
    config.loss.triplet_feature = "features"  # f_ID before the BN, as the paper says.
    config.loss.triplet_margin = 0.3
    config.loss.dsanet_lambda = 0.1
    config.loss.dsanet_lambda_cam = lambda_cam
    set_step_adam(config, lr=3.5e-4, weight_decay=5e-4, decay_every_epochs=40)
    return config


# AP3D's `AP3DNLResNet50`: a Non-Local block after layer2 blocks 1, 3 and layer3 blocks 1, 3, 5.
AP3D_NONLOCAL_BLOCKS = ((), (1, 3), (1, 3, 5), ())


def set_nonlocal(config: ml_collections.ConfigDict) -> None:
    """`nonlocal`: Non-Local blocks at AP3D's positions (on the tiny test trunk, after
    layer2 and layer3 block 0): the STRF paper's §3.3 comparison "P3D-C + NL"."""
    tiny = config.model.arch == "tiny"
    config.model.nonlocal_blocks = ((), (0,), (0,), ()) if tiny else AP3D_NONLOCAL_BLOCKS


def set_backbone(config: ml_collections.ConfigDict, value: str) -> None:
    """`backbone=NAME`: the temporal block kind (`model.variant`)."""
    config.model.variant = value


def set_strf_stages(config: ml_collections.ConfigDict, value: str) -> None:
    """`stages=2+3`: STRF in the temporal blocks of those stages (STRF Table 5).

    The baseline's temporal blocks (layer2 {0, 2}, layer3 {0, 2, 4}) stay; a stage without
    temporal blocks (layer1, layer4) gets them at blocks {0, 2} (every other block from 0,
    the pattern of layer2/3; the paper does not say which blocks).
    """
    try:
        stages = sorted({int(v) for v in value.split("+")})
    except ValueError:
        stages = []
    if not stages or not set(stages) <= {1, 2, 3, 4}:
        raise ConfigError(f"stages= takes stage numbers 1-4 joined by '+', got {value!r}")
    arch = get_arch(config.model.arch)
    blocks = [list(b) for b in (config.model.temporal_blocks or arch.temporal_blocks)]
    for stage in stages:
        if not blocks[stage - 1]:
            blocks[stage - 1] = list(range(0, arch.stage_sizes[stage - 1], 2))[:2]
    config.model.temporal_blocks = tuple(tuple(b) for b in blocks)
    config.model.strf.stages = tuple(f"layer{s}" for s in stages)


# DSANet Table 2 rows -> the switches left on (all others off). Rows past the baseline
# include the disentanglement (CEL + camera classifier; their sizes, e.g. 27.4M for
# "+TLM w/o L_L/R", only add up with it) and L_ic (the table removes it only in
# "+TLM +FWG w/o L_ic"); SAO only in the last row.
DSANET_ABLATIONS = {
    "baseline": (),
    "tlm_wo_lr": ("disentangle", "tlm", "loss_ic"),
    "tlm": ("disentangle", "tlm", "loss_lr", "loss_ic"),
    "fwg_wo_w": ("disentangle", "fwg", "loss_ic"),
    "fwg": ("disentangle", "fwg", "loss_w", "loss_ic"),
    "tlm_fwg_wo_ic": ("disentangle", "tlm", "loss_lr", "fwg", "loss_w"),
    "tlm_fwg": ("disentangle", "tlm", "loss_lr", "fwg", "loss_w", "loss_ic"),
    "full": DSANET_SWITCHES,
}


def set_dsanet_ablation(config: ml_collections.ConfigDict, value: str) -> None:
    """`ablation=ROW`: the DSANet components of one row of the paper's Table 2, evaluated
    as Table 2 was ("we conduct the ablation studies according to the RRS"): one
    restricted-random-sampling clip per test tracklet."""
    if value not in DSANET_ABLATIONS:
        raise ConfigError(f"Unknown DSANet ablation {value!r}; valid: {list(DSANET_ABLATIONS)}")
    for switch in DSANET_SWITCHES:
        config.model.dsanet[switch] = switch in DSANET_ABLATIONS[value]
    config.input.test_sampler = "rrs"
