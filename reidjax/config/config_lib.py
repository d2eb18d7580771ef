"""The config library: the schema of every knob, the `:variant` parser and the loader.

Configs are `ml_collections.ConfigDict`s, locked after construction so that a misspelt key
(`--config.model.varient=i3d`) fails instead of being silently ignored. The papers'
recipes are in `reidjax.config.recipes`; experiment files in `configs/` combine the two.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import re
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_dict, config_flags

from reidjax.config import config_checks
from reidjax.errors import ConfigError
from reidjax.models.dsanet import DSANetConfig
from reidjax.models.strf import STRFConfig
from reidjax.pretrained.weights import DEFAULT_IMAGENET


def base_config() -> ml_collections.ConfigDict:
    """The schema: every knob with its default (a full-size C2D baseline on MARS).

    The training numbers here are the lineage code's (AP3D) defaults; the papers' recipes
    (`reidjax.config.recipes`) set each of theirs explicitly.
    """
    config = ml_collections.ConfigDict()
    config.seed = 0  # parameter init, data order and augmentation, dropout-free rngs.

    config.dataset = ml_collections.ConfigDict()
    # mars | lsvid | dukev | ilidsvid | prid2011 | synthetic | folder (your own data).
    config.dataset.name = "mars"
    # The tensorflow-datasets data dir the dataset was built in (python -m
    # input_pipeline build ... --data_dir DIR); "synthetic" is built there on first use.
    config.dataset.data_dir = "~/tensorflow_datasets"
    # iLIDS-VID / PRID2011: which of the ten train/test splits (0-9).
    config.dataset.split = 0
    # "folder" datasets (your own): the --name given to python -m input_pipeline build.
    config.dataset.folder_name = ""
    config.dataset.num_cameras = 0  # 0: from the dataset registry (or the prepared data).
    # Train on the lineage's dense pieces of long tracklets (docs/data.md): 64-frame pieces
    # (Duke-V, LS-VID, your own), 64-frame windows every 32 (iLIDS-VID); not MARS, PRID2011.
    config.dataset.dense_train = False
    config.dataset.synthetic_ids = 200  # synthetic: identities (half train, half test).
    config.dataset.synthetic_cameras = 4  # synthetic: cameras.

    config.input = ml_collections.ConfigDict()
    config.input.num_frames = 4  # T: frames per clip.
    # Readers that decode frames (training and evaluation): `workers` threads or worker
    # processes; "auto" = processes on hosts with 8+ cores, threads below. 0: inline.
    config.input.workers = 2
    config.input.worker_kind = "auto"  # auto | threads | processes
    config.input.height = 256  # frame size: the builder config the data is read from.
    config.input.width = 128  # frame width (see height).
    # Training clips: "stride" (T frames at `frame_stride` from a random start),
    # "rrs" (restricted random sampling) or "evenly".
    config.input.train_sampler = "stride"
    config.input.frame_stride = 8  # frames between the T frames of a "stride" clip.
    # "stride" clips are strided from T·frame_stride frames ("lineage", AP3D) or from the
    # (T−1)·frame_stride + 1 they span ("span"); shorter tracklets give T sorted random frames.
    config.input.stride_threshold = "lineage"
    config.input.flip_prob = 0.5  # one decision per clip.
    config.input.erasing_prob = 0.5  # random erasing, the same box on every frame.
    # Test: "dense" cuts every tracklet into consecutive clips of T frames (the last one
    # padded, see test_padding) and averages the clip features; "rrs" takes one clip per
    # tracklet, the first frame of each of T equal chunks (DSANet Table 2's protocol).
    config.input.test_sampler = "dense"
    # A "dense" tracklet's short last clip: "repeat" cycles through its own frames (4, 5,
    # 4, 5: TCLNet's test), "loop" wraps to the tracklet's start (4, 5, 0, 1).
    config.input.test_padding = "repeat"

    config.model = ml_collections.ConfigDict()
    config.model.name = "baseline"  # baseline | strf | dsanet.
    config.model.arch = "resnet50"  # or "tiny" (tests).
    config.model.variant = "c2d"  # c2d | i3d | p3da | p3db | p3dc.
    # Per-stage 0-based temporal block indices; None = arch default (layer2 {0,2},
    # layer3 {0,2,4} for ResNet-50).
    config.model.temporal_blocks = config_dict.placeholder(tuple)
    # Non-Local blocks (AP3D's, docs/models.md) after these 0-based blocks per stage, e.g.
    # ((), (1, 3), (1, 3, 5), ()) as AP3D's NL ResNet; () = none. Not DSANet.
    config.model.nonlocal_blocks = ()
    config.model.last_stride = 1  # layer4's stride (1: 16×8 maps for 256×128 input).
    config.model.num_classes = 0  # 0: the dataset's number of training identities.
    # Compute dtype (parameters stay float32): auto = bfloat16 on GPU/TPU, float32 on CPU;
    # or float32 | bfloat16.
    config.model.dtype = "auto"
    # Spatially strided convs / max pool: "auto" = polyphase (stride-1 ops, same function) on
    # the CPU backend, where XLA's strided backward is slow; native on GPU/TPU.
    config.model.strided_conv = "auto"  # auto | native | phase.
    # What the trunk's backward pass recomputes instead of keeping (same gradients):
    # none | convs (keep conv outputs, recompute BN/ReLU/pooling: ~1% more FLOPs, half
    # the HBM traffic and activation memory on TPU v5e) | blocks (keep block inputs: one
    # more forward's FLOPs) | auto = convs on GPU/TPU, none on CPU. docs/models.md.
    config.model.remat = "auto"
    # STRF units (read by the "strf" model; docs/strf.md), from `STRFConfig`.
    config.model.strf = ml_collections.ConfigDict(dataclasses.asdict(STRFConfig()))
    # DSANet components (read by the "dsanet" model; docs/dsanet.md), from
    # `DSANetConfig`: each switch removes exactly its parameters and loss terms (Table 2).
    config.model.dsanet = ml_collections.ConfigDict(dataclasses.asdict(DSANetConfig()))

    config.loss = ml_collections.ConfigDict()
    config.loss.ce_weight = 1.0  # identity cross-entropy weight.
    config.loss.label_smoothing = 0.0  # of the identity cross-entropy.
    config.loss.triplet_weight = 1.0  # batch-hard triplet weight.
    config.loss.triplet_margin = 0.3  # the triplet loss margin.
    config.loss.triplet_distance = "cosine"  # | euclidean.
    config.loss.triplet_feature = "bn_features"  # post-BN (lineage) | features (pre-BN).
    # DSANet, Eqs. (9)-(10).
    config.loss.dsanet_lambda = 0.1
    config.loss.dsanet_lambda_cam = 0.1  # 0.5 on LS-VID.
    config.loss.ic_reduction = "mean"  # L_ic over channels: mean | sum.
    # Train P_FW, FWG's pseudo-label classifier, with its per-frame CE (weight lambda;
    # DSANet §3.3 "we compute the cross-entropy ... and learn to reduce this value"). Eqs.
    # (9)-(10) omit the term; without it P_FW gets no gradient, the pseudo labels are
    # uniform and L_w only teaches "be uniform" (docs/fidelity.md).
    config.loss.fwg_frame_ce = True

    config.train = ml_collections.ConfigDict()
    config.train.ids_per_batch = 8  # P identities ...
    config.train.clips_per_id = 4  # ... x K clips each = the global batch.
    # "tracklets": an epoch is one pass over the training tracklets in chunks of K (AP3D's
    # sampler; an id can appear twice in a batch); "identities": P distinct ids per batch,
    # an epoch is one pass over the ids. The LR schedule's epochs follow the same count.
    config.train.batch_sampler = "tracklets"
    config.train.epochs = 250  # in the batch sampler's epochs.
    config.train.num_steps = 0  # > 0 overrides epochs (smoke runs).
    config.train.log_every = 20  # steps between progress lines and metrics.jsonl rows.
    config.train.checkpoint_every = 1000  # steps between checkpoints (and the last step).
    config.train.keep_checkpoints = 3  # newest checkpoints kept.
    # > 0: a jax.profiler trace of this many steps (from the second step after the start)
    # into WORKDIR/profile (TensorBoard's profile plugin or Perfetto read it).
    config.train.profile_steps = 0
    # Evaluate every N steps during training (0: only after the last step; -1: never).
    config.train.eval_every = 0

    # Evaluation (eval.py and the periodic evaluation of train.py).
    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 32  # clips per global batch; a multiple of the device count.
    config.eval.distance = "cosine"  # cosine (1 - cos) | euclidean.
    # Clip features averaged weighted by their real frames ("frames": a mean over frames, as
    # AP3D's test) or each clip once ("clips", TCLNet's).
    config.eval.clip_weights = "frames"
    config.eval.max_rank = 20  # CMC curve length (R1 ... R<max_rank>).
    config.eval.rerank = False  # k-reciprocal re-ranking (k1, k2, lambda below).
    config.eval.rerank_k1 = 20  # re-ranking: k-reciprocal neighbours.
    config.eval.rerank_k2 = 6  # re-ranking: query expansion neighbours.
    config.eval.rerank_lambda = 0.3  # re-ranking: weight of the original distance.

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1  # devices on the data axis; -1 = all

    config.optim = ml_collections.ConfigDict()
    # adam: L2 coupled as in torch.optim.Adam; adamw: decoupled weight decay; sgd:
    # momentum 0.9, L2 coupled.
    config.optim.name = "adam"
    config.optim.lr = 3e-4  # peak learning rate.
    config.optim.weight_decay = 5e-4  # L2 (adam) or decoupled (adamw) decay.
    config.optim.lr_decay_every_epochs = 50  # step schedule: x decay_factor every N epochs.
    config.optim.lr_decay_factor = 0.1  # the factor of each step decay.
    config.optim.warmup_epochs = 0  # linear warm-up from 0 over N epochs.
    config.optim.grad_clip_norm = 0.0  # 0: off.
    # Frozen parameters: '/'-joined path prefixes (e.g. ("backbone/conv1", "backbone/layer1"));
    # their updates are zero (optax.multi_transform). BN statistics still update.
    config.optim.freeze = ()

    config.init = ml_collections.ConfigDict()
    # torchvision's ImageNet ResNet-50 weights, inflated into the trunk at start-up: the
    # .pth as torchvision publishes it (read without PyTorch), or a .npz / .safetensors
    # copy. "none" trains from scratch on purpose.
    config.init.imagenet = DEFAULT_IMAGENET
    # Fine-tuning: another run (its workdir, checkpoints folder or a step folder) to start
    # from: its parameters and BN statistics wherever name and shape agree (a classifier
    # for another identity count is re-initialised); fresh step and optimizer. Replaces
    # the ImageNet start. Used when the workdir has no checkpoint of its own.
    config.init.checkpoint = ""
    # A checkpoint folder (a workdir's checkpoints/ or one step inside it) to start from
    # when the workdir has no checkpoint of its own: its step, parameters, BN statistics
    # and optimizer state are restored, and training continues from its step.
    config.resume = ""
    return config


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
        keys: key -> function(config, value).

    Raises:
        ConfigError: an unknown variant or key, listing the valid ones.
    """
    if not arg:
        return
    keys = keys or {}
    for item in arg.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            key, value = (s.strip() for s in item.split("=", 1))
            if key not in keys:
                raise ConfigError(f"Unknown config arg key {key!r}; valid: {sorted(keys)}")
            keys[key](config, value)
        elif item in variants:
            variants[item](config)
        else:
            valid = [*sorted(variants), *(k + "=..." for k in sorted(keys))]
            raise ConfigError(f"Unknown config variant {item!r}; valid: {', '.join(valid)}")


def smoke(config: ml_collections.ConfigDict) -> None:
    """Tiny model, tiny frames (one block per stage, 32×64, T=2) and a 2-step run of
    2 ids × 4 clips with the evaluation at the end: `train.py --config CONFIG:smoke`
    checks a config end to end in seconds (on a dataset prepared at 32×64; 64 columns give
    DSANet's TLM the 4 feature-map columns it splits into halves and quarters)."""
    config.model.arch = "tiny"
    config.model.temporal_blocks = None
    if any(config.model.nonlocal_blocks):  # the tiny trunk has one block per stage
        config.model.nonlocal_blocks = ((), (0,), (0,), ())
    config.input.num_frames = 2
    config.input.height = 32
    config.input.width = 64
    config.train.ids_per_batch, config.train.clips_per_id = 2, 4
    config.train.num_steps = 2
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.eval.batch_size = 8
    config.init.imagenet = "none"  # ResNet-50 weights do not fit the tiny trunk


# The repository's configs/ folder (reidjax/config/config_lib.py -> the repository root).
CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs"
)


def load_config(
    name: str, arg: str | None = None, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """The config `--config name[:arg] --config.KEY=VALUE ...` gives train.py: the file
    `configs/<name>.py` (or a path to one) with the `:arg` variant, then the overrides, then
    every value checked (`config_checks.validate`).

    Args:
        name: a config name or file, optionally with `:arg` (then `arg` must be None).
        overrides: `KEY=VALUE` strings, `KEY` below `config.` (`train.num_steps=5`).

    Raises:
        ConfigError: no such file, an unknown variant, key or value, or a value that
            cannot work, in one line.
    """
    if arg is None and ":" in name:
        name, arg = name.split(":", 1)
    path = name if name.endswith(".py") else os.path.join(CONFIG_DIR, f"{name}.py")
    if not os.path.isfile(path):
        raise ConfigError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg): not a config file")
    config = module.get_config(arg)
    apply_overrides(config, overrides)
    return config_checks.validate(config)


def keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf key of `config`, dotted (`train.num_steps`)."""
    out = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out += keys(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


# Names other libraries give to a key (the last part of it): an unknown key ending in one
# is answered with the key of this schema, where spelling alone would suggest another.
SYNONYMS = {
    "learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay", "optimizer": "name",
    "steps": "num_steps", "max_steps": "num_steps", "total_steps": "num_steps",
    "batch": "batch_size", "frames": "num_frames", "seq_len": "num_frames",
    "clip_len": "num_frames", "classes": "num_classes", "backbone": "variant",
    "precision": "dtype", "num_workers": "workers",
}  # fmt: skip


def synonyms_of(key: str, known: Sequence[str]) -> list[str]:
    """The schema's keys for `key` if its last part is another library's name for one
    (`optim.learning_rate` -> `optim.lr`), the same section first."""
    section, _, leaf = key.rpartition(".")
    name = SYNONYMS.get(leaf)
    if name is None:
        return []
    found = [k for k in known if k.rpartition(".")[2] == name]
    return sorted(found, key=lambda k: k.rpartition(".")[0] != section)[:3]


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Sets `KEY=VALUE` overrides (`KEY` alone: a boolean set to true) in place, the last
    of a key winning (a tuple key given several times: its items), each parsed by
    ml_collections' `config_flags` as the type of the key's current value (`5`, `0.1`,
    `true`, `((), (1, 3))`, a string as it is): the parser of `--config.KEY=VALUE` in the
    Flax examples, run on a private flag set. One addition:
    `none` is Python's None for a key that is not a string (`model.temporal_blocks=none`:
    the arch's default), which `config_flags` turns into a tuple of letters.

    Raises:
        ConfigError: an unknown key (with the closest known ones), or a value that is not
            of the key's type, in one line.
    """
    known = keys(config)
    given = []
    for item in overrides:
        key, has_value, text = item.partition("=")
        key = key.strip().removeprefix("config.")
        if key not in known:
            raise ConfigError(f"config.{key} is not a config key{_hint(key, known)}")
        given.append((key, text if has_value else None))

    def holder_of(key: str) -> tuple[ml_collections.ConfigDict, str]:
        parent, _, leaf = key.rpartition(".")
        return (config_checks.get(config, parent) if parent else config), leaf

    def to_none(key: str, text: str | None) -> bool:
        holder, leaf = holder_of(key)
        return (
            text is not None and text.strip().lower() == "none" and holder.get_type(leaf) is not str
        )

    nulled = [key for key, text in dict(given).items() if to_none(key, text)]
    # Every occurrence goes to config_flags (a repeated tuple flag adds items; for any
    # other key the last wins), except those of a key whose last value is `none`.
    argv = ["reidjax"] + [
        f"--config.{key}" if text is None else f"--config.{key}={text}"
        for key, text in given
        if key not in nulled and not to_none(key, text)
    ]
    if len(argv) > 1:
        flag_values = flags.FlagValues()
        config_flags.DEFINE_config_dict("config", config, flag_values=flag_values, sys_argv=argv)
        try:
            flag_values(argv)
        except flags.IllegalFlagValueError as e:
            raise ConfigError(_bad_value(config, str(e))) from None
    for key in nulled:
        holder, leaf = holder_of(key)
        with holder.ignore_type():
            holder[leaf] = None


def _hint(key: str, known: Sequence[str]) -> str:
    """What to say after "config.KEY is not a config key": the key meant, or the keys of
    its section."""
    close = synonyms_of(key, known) or difflib.get_close_matches(key, known, 3, 0.6)
    if close:
        return f"; did you mean {' or '.join('config.' + k for k in close)}?"
    section = key.rsplit(".", 1)[0]
    siblings = sorted(k for k in known if k.startswith(section + "."))
    return f"; the keys of config.{section} are {', '.join(siblings)}" if siblings else ""


def _bad_value(config: ml_collections.ConfigDict, message: str) -> str:
    """absl's "flag --config.KEY=TEXT: reason" as this library's one line."""
    found = re.match(r"flag --config\.([\w.]+)=(.*?): (.*)", message, re.DOTALL)
    if not found:
        return message
    key, text, reason = found.groups()
    parent, _, leaf = key.rpartition(".")
    field_type = (config_checks.get(config, parent) if parent else config).get_type(leaf)
    if field_type is bool:
        return f"config.{key}={text!r} must be true or false"
    kind = getattr(field_type, "__name__", str(field_type))
    return f"config.{key}={text!r} is not {'an' if kind[0] in 'aeiou' else 'a'} {kind} ({reason})"
