"""Model zoo: inflated ResNet trunks, heads, the re-ID networks built on them and their
losses (`losses`: each family owns its objective)."""

from reidjax.models.baseline import VideoReIDNet
from reidjax.models.factory import MODELS, ReIDModel, build_model
from reidjax.models.resnet3d import ARCHS, VARIANTS, ImageNetResNet, ResNet3D

__all__ = [
    "ARCHS",
    "MODELS",
    "VARIANTS",
    "ImageNetResNet",
    "ReIDModel",
    "ResNet3D",
    "VideoReIDNet",
    "build_model",
]
