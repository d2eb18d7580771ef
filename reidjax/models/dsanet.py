"""DSANet: disentanglement, TLM, FWG and SAO on a C2D ResNet-50 (DSANet paper §3).

Shapes for 256×128 clips of T frames (C = 2048, h×w = 16×8):

    layer3 ──CEL (1×1×1 conv 1024→C, bias)──> F_cam [B,T,h,w,C] ──max T,h,w──> f_cam [B,C]
    layer4 = F_ID ──TLM──> F_t = Z_attn ⊙ F_ID + F_ID                          (Eq. 4)
    F_t ──spatial max──> f_t [B,T,C] ──FWG──> ŵ [B,T];  f_ID = Σ_i ŵ_i f_t[:, i]
    f_ID ──BN1d──> P ──> logits;  SAO: f_aug = f_ID + f_cam[π] ──BN1d──> P ──> logits_aug

TLM (Eqs. 2–4): F_ID's columns are cut into Z_L = [0, w/2), Z_R = [w/2, w) and
Z_M = [w/4, 3w/4). For each, channel-max and channel-mean maps go through one shared 7×7
conv (2 → 1, no bias, per frame) and a softmax over that frame's h×(w/2) positions, giving
A_L, A_R, A_M. Then Z_attn = [A_L; A_R] + A_M, with A_M added at its columns.
FWG: the predictor is a 1×1 conv (C → 1, with bias) over frames, s_i, and
ŵ = softmax_i(max s − s_i), the "reverse operation" of the pseudo label (Eq. 6, see
`reidjax.models.losses.frame_pseudo_labels`). With FWG off, f_ID is the temporal mean of f_t.

Every ablation switch of Table 2 (`DSANetConfig`) removes exactly its parameters here and
its loss terms in `reidjax.models.losses.dsanet_objective`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reidjax.errors import ConfigError
from reidjax.models.conv import Conv3D
from reidjax.models.heads import bn1d_scale_init
from reidjax.models.losses import l2_normalize
from reidjax.models.norm import BatchNorm
from reidjax.models.resnet3d import ResNet3D, get_arch

Array = jax.Array
TEST_FEATURES = ("bn_features", "features")
FWG_SCOPES = ("tracklet", "clip")


@dataclasses.dataclass(frozen=True)
class DSANetConfig:
    """DSANet's components; each can be switched off (DSANet Table 2).

    Attributes:
        disentangle: CEL branch, f_cam, camera classifier (L_cam) and L_dis.
        tlm: Target Localization Module.
        loss_lr: L_L/R and its classifier P_LR (needs `tlm`).
        fwg: Frame Weight Generation (off: temporal mean).
        loss_w: L_w and the pseudo-label classifier P_FW (needs `fwg`).
        loss_ic: the intra-class loss L_ic (no parameters).
        sao: switching and aggregation, CE(P(f_aug)) (needs `disentangle`; no parameters).
        test_feature: `features` (f_ID before the BN: "we use f_ID only as the final
            representation", the default) or `bn_features` (post-BN, the lineage's rule).
        fwg_scope: FWG's softmax at test: `tracklet` (over every frame of the tracklet:
            "we compute all the frames of the sequence", the default) or `clip` (within
            each test clip, the clips' f_ID then averaged as `eval.clip_weights` says).
    """

    disentangle: bool = True
    tlm: bool = True
    loss_lr: bool = True
    fwg: bool = True
    loss_w: bool = True
    loss_ic: bool = True
    sao: bool = True
    test_feature: str = "features"
    fwg_scope: str = "tracklet"

    def __post_init__(self):
        if self.loss_lr and not self.tlm:
            raise ConfigError("DSANet loss_lr (L_L/R) needs tlm=True (set loss_lr=false too)")
        if self.loss_w and not self.fwg:
            raise ConfigError("DSANet loss_w (L_w) needs fwg=True (set loss_w=false too)")
        if self.sao and not self.disentangle:
            raise ConfigError(
                "DSANet sao needs disentangle=True (it switches f_cam; set sao=false too)"
            )
        if self.fwg_scope not in FWG_SCOPES:
            raise ConfigError(
                f"Unknown DSANet fwg_scope {self.fwg_scope!r}; valid: {list(FWG_SCOPES)}"
            )
        if self.test_feature not in TEST_FEATURES:
            raise ConfigError(
                f"Unknown DSANet test_feature {self.test_feature!r}; valid: {list(TEST_FEATURES)}"
            )


def _classifier(num_classes: int, name: str) -> nn.Dense:
    return nn.Dense(
        num_classes,
        kernel_init=nn.initializers.normal(0.001),
        bias_init=nn.initializers.zeros_init(),
        name=name,
    )


def _spatial_softmax(logits: Array) -> Array:
    """Softmax over the h×w positions of each frame: `[B, T, h, w]` -> same."""
    b, t, h, w = logits.shape
    return jax.nn.softmax(logits.reshape(b, t, h * w), axis=-1).reshape(b, t, h, w)


class TLM(nn.Module):
    """Target Localization Module (Eqs. 2–3): returns Z_attn `[B, T, h, w]`."""

    @nn.compact
    def __call__(self, f_id: Array) -> Array:
        w = f_id.shape[3]
        if w % 4:
            raise ValueError(
                f"TLM splits F_ID into halves and a middle: its width must be divisible by 4, "
                f"got {w} (with last stride 1 that is frame width / 16: use frames >= 64 wide)"
            )
        conv = Conv3D(1, (1, 7, 7), kernel_init=nn.initializers.lecun_normal(), name="conv")

        def attend(z):  # Eq. (2)
            maps = jnp.concatenate(
                [jnp.max(z, axis=-1, keepdims=True), jnp.mean(z, axis=-1, keepdims=True)], -1
            )
            return _spatial_softmax(conv(maps.astype(jnp.float32))[..., 0])

        half, quarter = w // 2, w // 4
        a_left = attend(f_id[:, :, :, :half])
        a_right = attend(f_id[:, :, :, half:])
        a_mid = attend(f_id[:, :, :, quarter : quarter + half])
        pad = ((0, 0), (0, 0), (0, 0), (quarter, w - quarter - half))
        return jnp.concatenate([a_left, a_right], axis=3) + jnp.pad(a_mid, pad)  # Eq. (3)


class DSANet(nn.Module):
    """DSANet on an inflated C2D ResNet.

    Attributes:
        num_classes: training identities.
        num_cameras: cameras (camera classifier width).
        switches: `DSANetConfig`.
        arch, last_stride, dtype, strided_impl, remat: as for `ResNet3D`.
    """

    num_classes: int
    num_cameras: int
    switches: DSANetConfig = DSANetConfig()
    arch: str = "resnet50"
    last_stride: int = 1
    dtype: Any = jnp.float32
    strided_impl: str = "auto"
    remat: str = "none"

    @nn.compact
    def __call__(self, clips: Array, train: bool = False) -> dict[str, Array]:
        """Runs DSANet on clips `[B, T, H, W, 3]`.

        Returns:
            Named float32 outputs: `features` (f_ID, pre-BN) `[B, C]`, `bn_features`,
            `logits`, `embedding` (the test feature, L2-normalised); `frame_features` f_t
            `[B, T, C]`. With the switches on: `f_cam`, `cam_logits`; `lr_logits_left/right`
            `[B, T, N]`; `frame_weights` ŵ `[B, T]`, `frame_logits` (P_FW) `[B, T, N]`;
            in training `logits_aug` and `sao_permutation`. For visualisation:
            `tlm_attention` Z_attn `[B, T, h, w]`, `fid_activation` and `fcam_activation`
            (channel means of F_ID and F_cam, paper Fig. 6).
        """
        sw = self.switches
        out: dict[str, Array] = {}
        stages = ResNet3D(
            arch=self.arch,
            variant="c2d",
            last_stride=self.last_stride,
            dtype=self.dtype,
            strided_impl=self.strided_impl,
            remat=self.remat,
            name="backbone",
        )(clips, train=train)
        f_id_map = stages["layer4"].astype(jnp.float32)  # F_ID
        channels = get_arch(self.arch).out_features
        out["fid_activation"] = jnp.mean(f_id_map, axis=-1)
        if sw.disentangle:
            f_cam_map = Conv3D(channels, (1, 1, 1), use_bias=True, dtype=self.dtype, name="cel")(
                stages["layer3"]
            ).astype(jnp.float32)
            out["f_cam"] = jnp.max(f_cam_map, axis=(1, 2, 3))
            out["fcam_activation"] = jnp.mean(f_cam_map, axis=-1)
            out["cam_logits"] = _classifier(self.num_cameras, "cam_classifier")(out["f_cam"])
        f_t_map = f_id_map
        if sw.tlm:
            attention = TLM(name="tlm")(f_id_map)
            out["tlm_attention"] = attention
            f_t_map = attention[..., None] * f_id_map + f_id_map  # Eq. (4)
            if sw.loss_lr:
                half = f_t_map.shape[3] // 2
                p_lr = _classifier(self.num_classes, "lr_classifier")
                out["lr_logits_left"] = p_lr(jnp.max(f_t_map[:, :, :, :half], axis=(2, 3)))
                out["lr_logits_right"] = p_lr(jnp.max(f_t_map[:, :, :, half:], axis=(2, 3)))
        f_t = jnp.max(f_t_map, axis=(2, 3))  # [B, T, C]
        out["frame_features"] = f_t
        if sw.fwg:
            s = nn.Dense(1, name="fwg_predictor")(f_t)[..., 0]  # 1×1 conv over frames
            weights = jax.nn.softmax(jnp.max(s, axis=1, keepdims=True) - s, axis=1)
            out["frame_weights"] = weights
            f_id = jnp.einsum("bt,btc->bc", weights, f_t)
            if sw.loss_w:
                out["frame_logits"] = _classifier(self.num_classes, "fwg_classifier")(f_t)
        else:
            f_id = jnp.mean(f_t, axis=1)
        bn = BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            scale_init=bn1d_scale_init,
            name="bn",
        )
        classifier = _classifier(self.num_classes, "classifier")
        out["features"] = f_id
        out["bn_features"] = bn(f_id)
        out["logits"] = classifier(out["bn_features"])
        out["embedding"] = l2_normalize(out[sw.test_feature])
        if sw.fwg and not train:
            # For FWG over a whole tracklet: each frame's test feature and log-weight.
            # ŵ = softmax(max s − s) = exp(−s)/Σexp(−s), and the BN is affine per channel,
            # so pooling these over all frames is the paper's video-level f_ID.
            frames = f_t if sw.test_feature == "features" else bn(f_t)
            out["frame_test_features"] = frames
            out["frame_log_weights"] = -s
        if train and sw.sao:
            if not self.has_rng("sao"):
                raise ValueError(
                    "DSANet training with SAO draws its batch permutation from the step key: "
                    "apply(..., rngs={'sao': key})"
                )
            perm = jax.random.permutation(self.make_rng("sao"), f_id.shape[0])
            out["sao_permutation"] = perm
            # f_aug through the same BN with its own batch statistics, which must not reach
            # the running ones: only f_ID's statistics belong in the test-time BN.
            out["logits_aug"] = classifier(bn(f_id + out["f_cam"][perm], update_stats=False))
        return out
