"""2D → 3D inflation: torchvision's ImageNet ResNet-50 variables copied into an inflated
trunk (temporal kernels centre- or identity-initialised where the 2D kernel has one slice),
with a report of what was copied, inflated, kept at init and left unused."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from flax import traverse_util

from reidjax.pretrained.weights import Variables, WeightFileError, _fmt, load_torchvision_resnet50


@dataclasses.dataclass
class InflationReport:
    """What `inflate` did to each target parameter (paths joined with `/`)."""

    copied: list[str] = dataclasses.field(default_factory=list)
    inflated: list[str] = dataclasses.field(default_factory=list)
    kept_init: list[str] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"ImageNet init: {len(self.copied)} tensors copied, {len(self.inflated)} inflated "
            f"to 3D (centre slice), {len(self.kept_init)} kept at init"
        )
        if self.kept_init:
            text += f" ({_preview(self.kept_init)})"
        if self.unused:
            text += f"; {len(self.unused)} unused ({_preview(self.unused)})"
        return text


def _preview(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def inflate(
    source: Variables, target: Variables, scope: str = "backbone"
) -> tuple[Variables, InflationReport]:
    """Copies 2D weights into a video model's trunk.

    Args:
        source: 2D variables (`load_torchvision_resnet50`); only entries under `scope` are used.
        target: the video model's initialised variables (`params`, `batch_stats`).
        scope: the trunk's module name in both trees.

    Returns:
        (new target variables, report). A `[kt, kh, kw, I, O]` kernel whose 2D source is
        `[1, kh, kw, I, O]` gets it in slice `kt // 2`, zeros elsewhere (centre init);
        same-shape entries are copied; target entries without a source keep their init.

    Raises:
        WeightFileError: a shape that can be neither copied nor inflated (e.g. ImageNet
            ResNet-50 weights into the `tiny` arch), listing every such entry.
    """
    src = {
        k: v for k, v in traverse_util.flatten_dict(source).items() if len(k) > 1 and k[1] == scope
    }
    flat = traverse_util.flatten_dict(target)
    report = InflationReport()
    errors = []
    out = {}
    for key, value in flat.items():
        name = _fmt(key)
        if len(key) < 2 or key[1] != scope or key not in src:
            out[key] = value
            if len(key) > 1 and key[1] == scope:
                report.kept_init.append(name)
            continue
        s = np.asarray(src[key], np.float32)
        shape = tuple(value.shape)
        if s.shape == shape:
            out[key] = s
            report.copied.append(name)
        elif len(shape) == 5 and s.shape[0] == 1 and s.shape[1:] == shape[1:]:
            kernel = np.zeros(shape, np.float32)
            kernel[shape[0] // 2] = s[0]
            out[key] = kernel
            report.inflated.append(name)
        else:
            errors.append(f"  {name}: weights {s.shape} vs model {shape}")
    if errors:
        raise WeightFileError(
            f"ImageNet weights do not fit the model's {scope!r} ({len(errors)} mismatches; "
            "ResNet-50 weights need model.arch='resnet50'):\n" + "\n".join(errors[:20])
        )
    report.unused = sorted(_fmt(k) for k in src if k not in flat)
    report.unused += sorted(
        _fmt(k) for k in traverse_util.flatten_dict(source) if not (len(k) > 1 and k[1] == scope)
    )
    return traverse_util.unflatten_dict(out), report


def load_imagenet(
    path: str | os.PathLike, target: Variables, scope: str = "backbone"
) -> tuple[Variables, InflationReport]:
    """Loads torchvision ImageNet weights from `path` and inflates them into `target`.

    This is the startup initialisation behind `config.init.imagenet`.
    """
    return inflate(load_torchvision_resnet50(path), target, scope=scope)
