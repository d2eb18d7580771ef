"""PyTorch ResNet-50 with torchvision's module names, in 2D and inflated-3D forms.

An independent reference for the Flax models: `TorchResNet(dims=2)` has exactly the
state_dict names and shapes of `torchvision.models.resnet50` (which cannot be installed
here); `dims=3` is the same network with Conv3d layers and the temporal blocks of
`reidjax/models/resnet3d.py`
(`conv2` replaced, P3D's temporal conv named `conv2_t`), for parity tests and for the
PyTorch-eager side of the benchmarks. Never imported by training code.
"""

from __future__ import annotations

import torch
from torch import nn

STAGES = {"resnet50": ((3, 4, 6, 3), 64), "tiny": ((1, 1, 1, 1), 8)}
TEMPORAL = {"resnet50": ((), (0, 2), (0, 2, 4), ()), "tiny": ((), (0,), (0,), ())}


class Bottleneck(nn.Module):
    def __init__(self, dims, inplanes, planes, stride, temporal, downsample):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        k = (lambda kh: kh) if dims == 2 else (lambda kh: (1, kh, kh))
        st = stride if dims == 2 else (1, stride, stride)
        pad = (lambda p: p) if dims == 2 else (lambda p: (0, p, p))
        self.temporal = temporal
        self.conv1 = conv(inplanes, planes, k(1), bias=False)
        self.bn1 = bn(planes)
        if temporal == "i3d":
            self.conv2 = nn.Conv3d(planes, planes, 3, (1, stride, stride), 1, bias=False)
        else:
            self.conv2 = conv(planes, planes, k(3), st, pad(1), bias=False)
        if temporal in ("p3da", "p3dc"):
            self.conv2_t = nn.Conv3d(planes, planes, (3, 1, 1), 1, (1, 0, 0), bias=False)
        elif temporal == "p3db":
            self.conv2_t = nn.Conv3d(
                planes, planes, (3, 1, 1), (1, stride, stride), (1, 0, 0), bias=False
            )
        self.bn2 = bn(planes)
        self.conv3 = conv(planes, planes * 4, k(1), bias=False)
        self.bn3 = bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(
                conv(inplanes, planes * 4, k(1), st, bias=False), bn(planes * 4)
            )

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        if self.temporal == "p3da":
            y = self.conv2_t(self.conv2(y))
        elif self.temporal == "p3db":
            y = self.conv2(y) + self.conv2_t(y)
        elif self.temporal == "p3dc":
            s = self.conv2(y)
            y = s + self.conv2_t(s)
        else:
            y = self.conv2(y)
        y = self.relu(self.bn2(y))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class TorchResNet(nn.Module):
    """ResNet-50 (v1.5) in torchvision's naming.

    Args:
        dims: 2 (images `[N, 3, H, W]`, ImageNet classifier) or 3 (clips `[B, 3, T, H, W]`).
        variant: temporal block kind for dims=3 (`c2d`, `i3d`, `p3da`, `p3db`, `p3dc`).
        arch: `resnet50` or `tiny`.
        last_stride: layer4 stride (2 for ImageNet, 1 for re-ID).
        num_classes: width of `fc` (0: no fc, return the layer4 map).
    """

    def __init__(self, dims=2, variant="c2d", arch="resnet50", last_stride=2, num_classes=1000):
        super().__init__()
        stages, width = STAGES[arch]
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        if dims == 2:
            self.conv1 = conv(3, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = conv(3, width, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
            self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.bn1 = bn(width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = width
        for stage, n in enumerate(stages):
            planes = width * 2**stage
            blocks = []
            for b in range(n):
                stride = 1
                if b == 0 and stage > 0:
                    stride = last_stride if stage == len(stages) - 1 else 2
                temporal = variant if dims == 3 and b in TEMPORAL[arch][stage] else "c2d"
                blocks.append(Bottleneck(dims, inplanes, planes, stride, temporal, b == 0))
                inplanes = planes * 4
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, num_classes) if num_classes else None

    def trunk(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        x = self.trunk(x)
        if self.fc is None:
            return x
        return self.fc(torch.flatten(x.mean(dim=tuple(range(2, x.dim()))), 1))


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Gives every BN random affine parameters and running statistics (eval-mode tests)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=generator))
                m.bias.copy_(0.2 * torch.randn(c, generator=generator))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
