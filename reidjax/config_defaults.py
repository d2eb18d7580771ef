"""The complete set of config knobs, with defaults; every experiment config starts here.

Configs are `ml_collections.ConfigDict`s, locked after construction so that a misspelt key
(`--config.model.varient=i3d`) fails instead of being silently ignored.
"""

from __future__ import annotations

import os

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """Returns the default config (full-size C2D on MARS at 256×128, 4-frame clips)."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "mars"
    # The ingested dataset folder (python -m input_pipeline.ingest ... --out DIR). For
    # "synthetic", it is generated there on first use.
    config.dataset.dir = ""
    config.dataset.num_cameras = 0  # 0: from the dataset registry (or the ingested data).
    config.dataset.synthetic_ids = 200
    config.dataset.synthetic_cameras = 4

    config.input = ml_collections.ConfigDict()
    config.input.num_frames = 4  # T: frames per clip.
    config.input.height = 256
    config.input.width = 128
    # Training clips (SPEC §5): "stride" (T frames at `frame_stride` from a random start),
    # "rrs" (restricted random sampling) or "evenly".
    config.input.train_sampler = "stride"
    config.input.frame_stride = 8
    config.input.flip_prob = 0.5  # one decision per clip.
    config.input.erasing_prob = 0.5  # random erasing, the same box on every frame.
    # Test: "dense" cuts every tracklet into consecutive clips of T frames (the last one
    # loop-padded) and averages the clip features.
    config.input.test_sampler = "dense"

    config.model = ml_collections.ConfigDict()
    config.model.name = "baseline"
    config.model.arch = "resnet50"  # or "tiny" (tests).
    config.model.variant = "c2d"  # c2d | i3d | p3da | p3db | p3dc.
    # Per-stage 0-based temporal block indices; None = arch default (layer2 {0,2},
    # layer3 {0,2,4} for ResNet-50).
    config.model.temporal_blocks = config_dict.placeholder(tuple)
    config.model.last_stride = 1
    config.model.num_classes = 0  # 0: the dataset's number of training identities.
    config.model.dtype = "float32"  # compute dtype: float32 | bfloat16.
    # Spatially strided convs / max pool: "auto" = polyphase (stride-1 ops, same function) on
    # the CPU backend, where XLA's strided backward is slow; native on GPU/TPU.
    config.model.strided_conv = "auto"  # auto | native | phase.
    # STRF units (used when model.name == "strf"; SPEC §2, docs/strf.md).
    config.model.strf = ml_collections.ConfigDict()
    config.model.strf.resolutions = (1, 3)  # (r_tau, r_sig): odd pooling sizes.
    config.model.strf.pools = ("max", "max", "max", "max")  # t_tau, t_sig, s_tau, s_sig.
    config.model.strf.factors = ("t_tau", "t_sig", "s_tau", "s_sig")  # Table 4 ablations.
    config.model.strf.integration = "temporal_first"  # | spatial_first | parallel.
    config.model.strf.l2_normalize = True
    config.model.strf.kappa = 4.0
    config.model.strf.reduction = 16
    config.model.strf.stages = ("layer2", "layer3")  # Table 5: see configs/strf_mars.py.
    # DSANet components (used when model.name == "dsanet"; SPEC §3, docs/dsanet.md). Each
    # switch removes exactly its parameters and loss terms (Table 2 ablations).
    config.model.dsanet = ml_collections.ConfigDict()
    config.model.dsanet.disentangle = True  # CEL, f_cam, camera classifier, L_cam, L_dis.
    config.model.dsanet.tlm = True
    config.model.dsanet.loss_lr = True  # L_L/R and P_LR (needs tlm).
    config.model.dsanet.fwg = True
    config.model.dsanet.loss_w = True  # L_w and P_FW (needs fwg).
    config.model.dsanet.loss_ic = True
    config.model.dsanet.sao = True  # needs disentangle.
    config.model.dsanet.test_feature = "bn_features"  # post-BN f_ID | features (pre-BN).

    config.loss = ml_collections.ConfigDict()
    config.loss.ce_weight = 1.0
    config.loss.label_smoothing = 0.0
    config.loss.triplet_weight = 1.0
    config.loss.triplet_margin = 0.3
    config.loss.triplet_distance = "cosine"  # | euclidean.
    config.loss.triplet_feature = "bn_features"  # post-BN (lineage) | features (pre-BN).
    # DSANet, Eqs. (9)-(10).
    config.loss.dsanet_lambda = 0.1
    config.loss.dsanet_lambda_cam = 0.1  # 0.5 on LS-VID.
    config.loss.ic_reduction = "mean"  # L_ic over channels: mean | sum.
    # Train P_FW with its per-frame CE (weight lambda). Eqs. (9)-(10) have no such term, so
    # P_FW stays at its initialisation and the pseudo labels are near uniform; see
    # docs/dsanet.md.
    config.loss.fwg_frame_ce = False

    config.train = ml_collections.ConfigDict()
    config.train.ids_per_batch = 8  # P identities ...
    config.train.clips_per_id = 4  # ... x K clips each = the global batch.
    config.train.epochs = 250
    config.train.num_steps = 0  # > 0 overrides epochs (smoke runs).
    config.train.log_every = 20
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 3
    config.train.data_threads = 2  # grain read threads (threads beat processes on 2 cores)
    # Evaluate every N steps during training (0: only after the last step; -1: never).
    config.train.eval_every = 0

    # Evaluation (eval.py and the periodic evaluation of train.py; SPEC §6).
    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 32  # clips per global batch; a multiple of the device count.
    config.eval.distance = "cosine"  # cosine (1 - cos) | euclidean.
    config.eval.max_rank = 20
    config.eval.rerank = False  # k-reciprocal re-ranking (k1, k2, lambda below).
    config.eval.rerank_k1 = 20
    config.eval.rerank_k2 = 6
    config.eval.rerank_lambda = 0.3
    config.eval.data_threads = 2

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1  # devices on the data axis; -1 = all

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"  # adam: L2 coupled as in torch.optim.Adam | adamw.
    config.optim.lr = 3e-4
    config.optim.weight_decay = 5e-4
    config.optim.lr_decay_every_epochs = 50  # step schedule: x decay_factor every N epochs.
    config.optim.lr_decay_factor = 0.1
    config.optim.warmup_epochs = 0
    config.optim.grad_clip_norm = 0.0  # 0: off.

    config.init = ml_collections.ConfigDict()
    # ImageNet weights (.npz / .safetensors converted by tools/convert_weights.py, or a
    # torchvision .pth when torch is installed); "" starts from scratch.
    config.init.imagenet = ""
    # A checkpoint folder (a workdir's checkpoints/ or one step inside it) to start from
    # when the workdir has no checkpoint of its own: its step, parameters, BN statistics
    # and optimizer state are restored, and training continues from its step.
    config.resume = ""
    return config


def strf_recipe(dataset: str) -> ml_collections.ConfigDict:
    """STRF-P3D-C with the STRF supp. §C recipe (SPEC §2) on `dataset`.

    The base config already holds that recipe: Adam 3e-4 with coupled L2 5e-4, 250 epochs,
    x0.1 every 50; 8 ids x 4 clips of 4 frames at stride 8; CE + post-BN cosine triplet.
    """
    config = base_config()
    config.dataset.name = dataset
    config.model.name = "strf"
    config.model.variant = "p3dc"
    return config


def dsanet_recipe(dataset: str, lambda_cam: float = 0.1) -> ml_collections.ConfigDict:
    """DSANet with the §4.2 recipe (SPEC §3) on `dataset`.

    C2D; 8 ids x 4 clips of T = 8 frames by restricted random sampling; Adam 3.5e-4 with
    coupled L2 5e-4, x0.1 every 40 epochs, 200 epochs; triplet on the pre-BN f_ID.
    """
    config = base_config()
    config.dataset.name = dataset
    config.model.name = "dsanet"
    config.model.variant = "c2d"
    config.input.num_frames = 8
    config.input.train_sampler = "rrs"
    config.loss.triplet_feature = "features"  # f_ID before the BN, as the paper says.
    config.loss.dsanet_lambda = 0.1
    config.loss.dsanet_lambda_cam = lambda_cam
    config.optim.lr = 3.5e-4
    config.optim.lr_decay_every_epochs = 40
    config.train.epochs = 200
    return config


def set_backbone(config: ml_collections.ConfigDict, value: str) -> None:
    """`backbone=NAME`: the temporal block kind (`model.variant`)."""
    config.model.variant = value


def set_strf_stages(config: ml_collections.ConfigDict, value: str) -> None:
    """`stages=2+3`: STRF in the temporal blocks of those stages (STRF Table 5).

    The baseline's temporal blocks (layer2 {0, 2}, layer3 {0, 2, 4}) stay; a stage without
    temporal blocks (layer1, layer4) gets them at blocks {0, 2} (every other block from 0,
    the pattern of layer2/3; the paper does not say which blocks).
    """
    from reidjax.models.resnet3d import get_arch

    try:
        stages = sorted({int(v) for v in value.split("+")})
    except ValueError:
        stages = []
    if not stages or not set(stages) <= {1, 2, 3, 4}:
        raise ValueError(f"stages= takes stage numbers 1-4 joined by '+', got {value!r}")
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
    "full": ("disentangle", "tlm", "loss_lr", "fwg", "loss_w", "loss_ic", "sao"),
}
DSANET_SWITCHES = ("disentangle", "tlm", "loss_lr", "fwg", "loss_w", "loss_ic", "sao")


def set_dsanet_ablation(config: ml_collections.ConfigDict, value: str) -> None:
    """`ablation=ROW`: the DSANet components of one row of the paper's Table 2."""
    if value not in DSANET_ABLATIONS:
        raise ValueError(f"Unknown DSANet ablation {value!r}; valid: {list(DSANET_ABLATIONS)}")
    for switch in DSANET_SWITCHES:
        config.model.dsanet[switch] = switch in DSANET_ABLATIONS[value]


def dsanet_smoke(config: ml_collections.ConfigDict) -> None:
    """`smoke` for DSANet: the tiny model on 32×64 frames (TLM needs layer4 width >= 4)."""
    smoke(config)
    config.input.width = 64


def apply_variant(
    config: ml_collections.ConfigDict,
    arg: str | None,
    variants: dict,
    keys: dict | None = None,
) -> None:
    """Applies the `:arg` suffix of a config path (`configs/x.py:smoke,backbone=p3db`).

    Items are applied in order, so `smoke,stages=1+2` sizes the stages for the tiny arch.

    Args:
        config: the config to update in place.
        arg: comma-separated items, each a named variant (`smoke`) or `key=value`.
        variants: named variant -> function(config).
        keys: key -> function(config, value); default `{"backbone": set_backbone}`.

    Raises:
        ValueError: an unknown variant or key, listing the valid ones.
    """
    if not arg:
        return
    keys = keys if keys is not None else {"backbone": set_backbone}
    for item in arg.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            key, value = (s.strip() for s in item.split("=", 1))
            if key not in keys:
                raise ValueError(f"Unknown config arg key {key!r}; valid: {sorted(keys)}")
            keys[key](config, value)
        elif item in variants:
            variants[item](config)
        else:
            raise ValueError(
                f"Unknown config variant {item!r}; valid: {sorted(variants)} or "
                f"{' / '.join(k + '=...' for k in sorted(keys))}"
            )


def smoke(config: ml_collections.ConfigDict) -> None:
    """Tiny model, tiny frames (one block per stage, 32×16, T=2) and a 2-step run of
    2 ids × 4 clips with the evaluation at the end: `train.py --config CONFIG:smoke`
    checks a config end to end in seconds (on an ingested dataset at 32×16)."""
    config.model.arch = "tiny"
    config.model.temporal_blocks = None
    config.input.num_frames = 2
    config.input.height = 32
    config.input.width = 16
    config.train.ids_per_batch, config.train.clips_per_id = 2, 4
    config.train.num_steps = 2
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.eval.batch_size = 8


CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`configs/<name>.py` (or a path to a config file) with the `:arg` variant, as
    `--config configs/<name>.py:arg` gives it to train.py (for tests and benchmarks)."""
    import importlib.util

    path = name if name.endswith(".py") else os.path.join(CONFIG_DIR, f"{name}.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
