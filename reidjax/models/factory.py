"""Builds a model family from a config: the Flax module, its objective and its test feature.

Each family (baseline, strf, dsanet) says here, and only here, which loss it trains with,
which output is its test feature, which random streams its training forward pass needs and
which outputs can be drawn as attention maps. Everything above `reidjax/models/` works on
the `ReIDModel` it returns and never asks which family it is.

Sizes that the data decides (identities, cameras) are arguments: the config is not read
for them and nothing here reads a dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from reidjax.errors import ConfigError
from reidjax.models import losses
from reidjax.models.baseline import VideoReIDNet
from reidjax.models.dsanet import DSANet, DSANetConfig
from reidjax.models.remat import remat_mode
from reidjax.models.resnet3d import ResNet3D, check_variant, get_arch
from reidjax.models.strf import STRFConfig

# baseline: inflated ResNet + re-ID head; strf: the same with STRF units; dsanet: DSANet
# on C2D.
MODELS = ("baseline", "strf", "dsanet")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255

# (outputs, batch) -> named loss terms with their weighted sum under "total".
Objective = Callable[[dict, dict], dict]


def normalize(clips: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 clips -> ImageNet-normalised floats (on the device, inside the jitted step)."""
    return ((clips.astype(jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD).astype(dtype)


@dataclasses.dataclass(frozen=True)
class ReIDModel:
    """A built model family.

    Attributes:
        name: `config.model.name`.
        module: the Flax module; it takes ImageNet-normalised float clips `[B, T, H, W, 3]`.
        objective: `(outputs, batch) -> {term: value, "total": sum}`; `batch` has `labels`
            and `cameras` `[B]`.
        test_feature: the output averaged into a tracklet's feature (before L2).
        train_rngs: random streams of the training forward pass (DSANet's SAO: "sao").
        frame_pooling: `predict` returns per-frame test features and log-weights, pooled
            over every frame of a tracklet by the caller (DSANet's FWG, `fwg_scope`).
        maps: outputs that are attention maps `[B, T, h, w]` -> their picture label.
    """

    name: str
    module: nn.Module
    objective: Objective
    test_feature: str
    train_rngs: tuple[str, ...] = ()
    frame_pooling: bool = False
    maps: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def init(self, key: jax.Array, clips: jax.Array) -> dict:
        """The initial variables for float clips of the input shape."""
        return self.module.init(key, clips)

    def train_forward(self, variables: dict, clips: jax.Array, key: jax.Array):
        """Training-mode outputs of uint8 `clips` and the new BN statistics."""
        out, updates = self.module.apply(
            variables,
            normalize(clips),
            train=True,
            mutable=["batch_stats"],
            rngs={name: key for name in self.train_rngs},
        )
        return out, updates["batch_stats"]

    def predict(self, variables: dict, clips: jax.Array):
        """The test feature `[B, D]` (not normalised) of uint8 `clips` `[B, T, H, W, 3]`;
        with `frame_pooling`, `(features [B, T, D], log-weights [B, T])` per frame: the
        tracklet's feature is Σ exp(l)·f / Σ exp(l) over its real frames
        (`reidjax.evaluation.features.accumulate_frames`)."""
        out = self.module.apply(variables, normalize(clips), train=False)
        if self.frame_pooling:
            return out["frame_test_features"], out["frame_log_weights"]
        return out[self.test_feature]

    def attention(self, variables: dict, clips: jax.Array) -> dict[str, jax.Array]:
        """`{label: map [B, T, h, w]}` of the family's attention maps (empty if none)."""
        if not self.maps:
            return {}
        out = self.module.apply(variables, normalize(clips), train=False)
        return {label: out[key] for key, label in self.maps.items() if key in out}


def compute_dtype(name: str, backend: str | None = None):
    """Maps a config dtype name to a JAX dtype, or raises listing the valid names.
    `auto`: bfloat16 on GPU and TPU, float32 on CPU (`backend`: default JAX's)."""
    if name == "auto":
        backend = backend or jax.default_backend()
        return jnp.float32 if backend == "cpu" else jnp.bfloat16
    if name not in DTYPES:
        raise ConfigError(f"Unknown compute dtype {name!r}; valid: {sorted(DTYPES)} or auto")
    return DTYPES[name]


def strf_config(config: ml_collections.ConfigDict) -> STRFConfig:
    """The `STRFConfig` of `config.model.strf` (validated)."""
    c = config.model.strf.to_dict()
    return STRFConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})


def dsanet_config(config: ml_collections.ConfigDict) -> DSANetConfig:
    """The `DSANetConfig` of `config.model.dsanet` (validated)."""
    return DSANetConfig(**config.model.dsanet.to_dict())


def feature_width(config: ml_collections.ConfigDict) -> int:
    """Width of the trunk's last feature map for the config's frames (the stem's conv and
    max pool, layer2 and layer3 each halve it, rounding up as 'SAME' padding does; then
    layer4's stride)."""
    width = config.input.width
    for _ in range(4):
        width = -(-width // 2)
    return -(-width // config.model.last_stride)


def check_config(config: ml_collections.ConfigDict) -> None:
    """The family's own checks of `config.model`, without building or tracing anything
    (and without touching a JAX backend): the switch dataclasses, the trunk's temporal
    blocks and what each family needs of them and of the frame size.

    Raises:
        ConfigError: the first value that cannot work, in one line.
    """
    m = config.model
    try:
        strf = strf_config(config) if m.name == "strf" else None
        switches = dsanet_config(config)
        trunk = ResNet3D(
            arch=m.arch,
            variant=m.variant,
            temporal_blocks=m.temporal_blocks,
            strf=strf,
            nonlocal_blocks=tuple(map(tuple, m.nonlocal_blocks)),
        )
        trunk.resolved_temporal_blocks()
        trunk.resolved_nonlocal_blocks()
    except (TypeError, ValueError) as e:  # the dataclasses' and the trunk's own checks
        raise ConfigError(f"config.model: {e}") from None
    if m.name == "dsanet":
        if any(m.nonlocal_blocks):
            raise ConfigError(
                "config.model.nonlocal_blocks: Non-Local blocks are for the baseline and STRF "
                "models, not DSANet"
            )
        if m.variant != "c2d":
            raise ConfigError(
                f"config.model.variant={m.variant!r}: DSANet is built on the C2D backbone "
                "(set --config.model.variant=c2d)"
            )
        if switches.tlm and feature_width(config) % 4:
            raise ConfigError(
                f"config.input.width={config.input.width}: DSANet's TLM splits the last "
                f"feature map ({feature_width(config)} columns) into halves and quarters; "
                "use a width whose feature map has a multiple of 4 columns (e.g. 64 or 128)"
            )


def loss_spec(config: ml_collections.ConfigDict) -> losses.LossSpec:
    """The objectives' weights and choices, from `config.loss`."""
    c = config.loss
    return losses.LossSpec(**{f.name: c[f.name] for f in dataclasses.fields(losses.LossSpec)})


def build_model(config: ml_collections.ConfigDict, num_classes: int, num_cameras: int) -> ReIDModel:
    """The model family of `config.model` with its objective (`config.loss`).

    Args:
        config: the experiment config.
        num_classes: training identities (`config.model.num_classes` wins when > 0).
        num_cameras: cameras, for DSANet's camera classifier.

    Raises:
        ConfigError: unknown model name, arch, variant or dtype, listing the valid ones.
    """
    m, loss = config.model, loss_spec(config)
    if m.name not in MODELS:
        raise ConfigError(f"Unknown model {m.name!r}; valid: {list(MODELS)}")
    try:
        get_arch(m.arch)
        check_variant(m.variant)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    num_classes = m.num_classes or num_classes
    common = dict(
        arch=m.arch,
        last_stride=m.last_stride,
        dtype=compute_dtype(m.dtype),
        strided_impl=m.strided_conv,
        remat=remat_mode(m.remat),
    )
    if m.name == "dsanet":
        if m.variant != "c2d":
            raise ConfigError(
                f"DSANet is built on the C2D backbone; got model.variant={m.variant!r}"
            )
        switches = dsanet_config(config)
        module = DSANet(
            num_classes=num_classes, num_cameras=num_cameras, switches=switches, **common
        )

        def dsanet_objective(out: dict, batch: dict) -> dict:
            return losses.dsanet_objective(out, batch["labels"], batch["cameras"], switches, loss)

        return ReIDModel(
            m.name,
            module,
            dsanet_objective,
            test_feature=switches.test_feature,
            train_rngs=("sao",) if switches.sao else (),
            frame_pooling=switches.fwg and switches.fwg_scope == "tracklet",
            maps={"fid_activation": "F_ID", "fcam_activation": "F_cam", "tlm_attention": "TLM"},
        )
    blocks = m.temporal_blocks
    module = VideoReIDNet(
        num_classes=num_classes,
        variant=m.variant,
        temporal_blocks=None if blocks is None else tuple(map(tuple, blocks)),
        strf=strf_config(config) if m.name == "strf" else None,
        nonlocal_blocks=tuple(map(tuple, m.nonlocal_blocks)),
        **common,
    )

    def reid_objective(out: dict, batch: dict) -> dict:
        return losses.reid_objective(out, batch["labels"], loss)

    return ReIDModel(
        m.name,
        module,
        reid_objective,
        test_feature="bn_features",
        maps={"activation_layer3": "layer3", "activation_layer4": "layer4"},
    )


def dummy_clips(config: ml_collections.ConfigDict, batch_size: int = 1) -> jnp.ndarray:
    """A zero clip batch `[B, T, H, W, 3]` of the config's input shape (for init/shapes)."""
    i = config.input
    return jnp.zeros((batch_size, i.num_frames, i.height, i.width, 3), jnp.float32)
