"""ImageNet weights from PyTorch: torchvision ResNet-50 → Flax, and 2D → 3D inflation.

A torchvision state_dict (`resnet50-19c8e357.pth`, or the same tensors saved as `.npz` /
`.safetensors` by `tools/convert_weights.py`, which needs no torch to read) is renamed into
the Flax tree of `reidjax.models.ImageNetResNet`:

    conv1.weight                [O, I, kh, kw] -> backbone/conv1/kernel [1, kh, kw, I, O]
    bn1.{weight,bias}                          -> backbone/bn1/{scale,bias}        (params)
    bn1.{running_mean,running_var}             -> backbone/bn1/{mean,var}    (batch_stats)
    layer2.0.conv2.weight                      -> backbone/layer2_0/conv2/kernel
    layer2.0.downsample.{0,1}.*                -> backbone/layer2_0/downsample_{conv,bn}/*
    fc.{weight,bias}            [1000, 2048]   -> fc/{kernel [2048, 1000], bias}

The Flax convolutions use torch's explicit paddings (3 for the 7×7 stem, 1 for 3×3 convs
and the max pool), not 'SAME', which pads differently at stride 2.

`inflate` then copies the 2D trunk into any video backbone: kernels with a temporal extent
get the 2D kernel in their centre slice and zeros elsewhere (I3D centre init); parameters
with no 2D counterpart (P3D temporal convs, heads) keep their own initialisation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from reidjax.errors import UserError
from reidjax.models.resnet3d import ImageNetResNet
from reidjax.pretrained import pth
from reidjax.runtime import param_structure

# torchvision's ImageNet ResNet-50 v1 weights (top-1 76.13), where the benchmark configs
# look for them; reidjax never downloads anything.
IMAGENET_FILE = "resnet50-19c8e357.pth"
IMAGENET_URL = "https://download.pytorch.org/models/resnet50-19c8e357.pth"
DEFAULT_IMAGENET = f"~/.cache/reidjax/{IMAGENET_FILE}"
NONE = ("none", "")  # config.init.imagenet values that mean: from scratch
SUFFIXES = (".pth", ".pt", ".pth.tar", ".npz", ".safetensors")

Variables = dict[str, Any]


class WeightFileError(UserError, ValueError):
    """A weight file is missing, unreadable, or does not fit the model."""


# --------------------------------------------------------------------------- reading


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch-named state_dict as NumPy arrays.

    Args:
        path: `.pth`/`.pt` (`torch.save`'s zip or legacy format, read without torch by a
            restricted unpickler; a `{"state_dict": ...}` wrapper and a DataParallel
            `module.` prefix are accepted), `.npz` or `.safetensors`.

    Returns:
        name -> float32/int array, in the file's order.

    Raises:
        WeightFileError: missing, corrupt or truncated file, unknown suffix, or entries
            that are not tensors.
        pth.UnsafePickleError: a `.pth` whose pickle names anything but tensors and dicts.
    """
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise WeightFileError(
            f"Weight file not found: {path!r}. Download torchvision's ImageNet ResNet-50, "
            f"{IMAGENET_FILE}, from {IMAGENET_URL} to {path} (read as it is: no PyTorch "
            "needed), or pass --config.init.imagenet=PATH to a copy of it (.pth, or .npz / "
            ".safetensors from tools/convert_weights.py), or --config.init.imagenet=none to "
            "train from scratch"
        )
    suffix = os.path.splitext(path)[1].lower()
    if path.lower().endswith(".pth.tar"):
        suffix = ".pth.tar"
    try:
        if suffix in (".pth", ".pt", ".pth.tar", ".tar"):
            state = _read_torch(path)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                state = {k: np.asarray(data[k]) for k in data.files}
        elif suffix == ".safetensors":
            from safetensors.numpy import load_file

            state = load_file(path)
        else:
            raise WeightFileError(
                f"Unknown weight file type {suffix!r} for {path!r}; valid: {list(SUFFIXES)}"
            )
    except pth.UnsafePickleError as e:
        if pth.is_whole_model(path):
            raise WeightFileError(
                f"{path!r} holds a whole pickled PyTorch model ({e.global_name}), not a "
                "state_dict; it was not unpickled (that can run code). In PyTorch, save the "
                "weights alone with torch.save(model.state_dict(), 'weights.pth') and use "
                "that file"
            ) from e
        raise
    except WeightFileError:
        raise
    except Exception as e:  # numpy, zipfile, safetensors and torch each raise their own types
        raise WeightFileError(
            f"Could not read weight file {path!r} (corrupt or truncated?): {type(e).__name__}: {e}"
        ) from e
    if not state:
        raise WeightFileError(f"Weight file {path!r} holds no tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_torch(path: str) -> dict[str, np.ndarray]:
    """A `torch.save` file of a state_dict (zip or legacy format), read without torch."""
    obj = pth.load(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightFileError(f"{path!r} holds a {type(obj).__name__}, not a state_dict")
    for name, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise WeightFileError(
                f"{path!r}: entry {name!r} is a {type(value).__name__}, not a tensor"
            )
    return dict(obj)


# --------------------------------------------------------------------------- renaming


def _flax_module_path(torch_module: str) -> tuple[str, ...]:
    """`layer2.0.downsample.1` -> (`backbone`, `layer2_0`, `downsample_bn`); `fc` -> (`fc`,)."""
    parts = torch_module.split(".")
    if parts == ["fc"]:
        return ("fc",)
    out = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.startswith("layer") and i + 1 < len(parts) and parts[i + 1].isdigit():
            out.append(f"{part}_{parts[i + 1]}")
            i += 2
        elif part == "downsample" and i + 1 < len(parts):
            out.append({"0": "downsample_conv", "1": "downsample_bn"}.get(parts[i + 1], part))
            i += 2
        else:
            out.append(part)
            i += 1
    return ("backbone", *out)


def torch_to_flax(state_dict: Mapping[str, np.ndarray]) -> Variables:
    """Renames and transposes a torchvision-style state_dict into Flax variables.

    Conv weights `[O, I, kh, kw]` (Conv2d) or `[O, I, kt, kh, kw]` (Conv3d) become kernels
    `[kt, kh, kw, I, O]` (kt = 1 for 2D); BN weight/bias/running stats become
    scale/bias (params) and mean/var (batch_stats); `num_batches_tracked` is dropped.

    Returns:
        `{"params": ..., "batch_stats": ...}` nested dicts of float32 NumPy arrays.
    """
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for name, value in state_dict.items():
        module, _, leaf = name.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        path = _flax_module_path(module)
        value = np.asarray(value, np.float32)
        if leaf == "weight" and value.ndim == 4:
            flat[("params", *path, "kernel")] = value.transpose(2, 3, 1, 0)[None]
        elif leaf == "weight" and value.ndim == 5:
            flat[("params", *path, "kernel")] = value.transpose(2, 3, 4, 1, 0)
        elif leaf == "weight" and value.ndim == 2:
            flat[("params", *path, "kernel")] = value.T
        elif leaf == "weight" and value.ndim == 1:
            flat[("params", *path, "scale")] = value
        elif leaf == "bias":
            flat[("params", *path, "bias")] = value
        elif leaf == "running_mean":
            flat[("batch_stats", *path, "mean")] = value
        elif leaf == "running_var":
            flat[("batch_stats", *path, "var")] = value
        else:
            flat[("unknown", name)] = value
    return traverse_util.unflatten_dict(flat)


def _fmt(path: tuple[str, ...]) -> str:
    return "/".join(path)


def check_structure(variables: Variables, expected: Variables, what: str) -> None:
    """Raises a `WeightFileError` naming the missing, unexpected and mis-shaped entries."""
    problems = param_structure.shape_differences(variables, expected, have_name="file")
    if problems:
        raise WeightFileError(
            f"{what} does not fit the model ({len(problems)} differences: "
            f"{param_structure.summarize(problems)})"
        )


# --------------------------------------------------------------------------- 2D ResNet-50


@functools.cache
def _imagenet_shapes(arch: str = "resnet50") -> Variables:
    model = ImageNetResNet(arch=arch)
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32))
    )


def load_torchvision_resnet50(path: str | os.PathLike) -> Variables:
    """Loads a torchvision ResNet-50 (with its 1000-way fc) as `ImageNetResNet` variables.

    Args:
        path: `.pth` (torch needed), `.npz` or `.safetensors` with torchvision's names.

    Returns:
        `{"params", "batch_stats"}` for `ImageNetResNet("resnet50")` (float32 NumPy).

    Raises:
        WeightFileError: unreadable file, or missing/unexpected/mis-shaped tensors.
    """
    return resnet50_variables(read_state_dict(path), f"Weight file {os.fspath(path)!r}")


RESNET50_BLOCKS = {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}
_TRUNK = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
_WRAPPERS = ("module.", "base.", "backbone.", "model.", "encoder.")


def resnet50_state_dict(
    state: Mapping[str, np.ndarray], what: str
) -> tuple[dict[str, np.ndarray], str]:
    """The ResNet-50 of a state_dict, in torchvision's names: the trunk (conv1, bn1,
    layer1-4) and the fc when it is ImageNet's 1000-way one. A wrapper prefix (`base.`,
    `backbone.`, ...) is removed; any other head (a re-ID classifier, a BNNeck) is dropped,
    since training uses the trunk only.

    Returns:
        (state_dict, note): note names what was dropped ("" when nothing).

    Raises:
        WeightFileError: not a ResNet-50, said with the file's own tensor names.
    """
    state = dict(state)
    for _ in range(3):  # e.g. module.base.conv1.weight
        prefix = next((p for p in _WRAPPERS if any(k.startswith(p + "conv1.") for k in state)), "")
        if not prefix:
            break
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    trunk = {k: v for k, v in state.items() if k.startswith(_TRUNK)}
    blocks = {
        s: len({k.split(".")[1] for k in trunk if k.startswith(s + ".")}) for s in RESNET50_BLOCKS
    }
    if (
        blocks != RESNET50_BLOCKS
        or "conv1.weight" not in trunk
        or "layer1.0.conv3.weight" not in trunk
    ):
        names = ", ".join(list(state)[:4])
        found = ", ".join(f"{s}: {n}" for s, n in blocks.items())
        bottleneck = "" if "layer1.0.conv3.weight" in trunk else "; no bottleneck conv3"
        raise WeightFileError(
            f"{what} is not a torchvision ResNet-50 state_dict: its {len(state)} tensors are "
            f"named like {names}, ...; a ResNet-50 has conv1, bn1 and layer1-layer4 of 3, 4, "
            f"6 and 3 bottleneck blocks, this file has blocks {found}{bottleneck}"
        )
    fc = state.get("fc.weight")
    if fc is not None and fc.shape == (1000, 2048) and "fc.bias" in state:
        trunk.update({"fc.weight": fc, "fc.bias": state["fc.bias"]})
    dropped = {}
    for name, value in state.items():
        if name not in trunk and not name.endswith("num_batches_tracked"):
            module = name.rsplit(".", 1)[0]
            if name.endswith(".weight") and np.ndim(value) == 2:
                dropped[module] = f"{module} ({np.shape(value)[0]}-way)"
            else:
                dropped.setdefault(module, module)
    note = f"dropped {', '.join(dropped.values())}: not part of the trunk" if dropped else ""
    return trunk, note


def resnet50_variables(state_dict: Mapping[str, np.ndarray], what: str) -> Variables:
    """Converts a torchvision ResNet-50 state_dict (`resnet50_state_dict`: any classifier
    or none) and checks it against the Flax layout.

    Raises:
        WeightFileError: naming `what`: not a ResNet-50, or every missing/unexpected/
            mis-shaped tensor.
    """
    state, _ = resnet50_state_dict(state_dict, what)
    variables = torch_to_flax(state)
    expected = _imagenet_shapes()
    if "fc" not in variables["params"]:  # no ImageNet classifier: the trunk alone
        expected = {k: {m: v for m, v in t.items() if m != "fc"} for k, t in expected.items()}
    check_structure(variables, expected, what)
    return variables


@functools.partial(jax.jit, static_argnums=0)
def _imagenet_apply(model, variables, images):
    return model.apply(variables, images, train=False)


def imagenet_logits(variables: Variables, images) -> jax.Array:
    """ImageNet logits of the 2D ResNet-50 (inference-mode BN).

    Args:
        variables: from `load_torchvision_resnet50`.
        images: `[N, H, W, 3]` float32, ImageNet-normalised (mean 0.485/0.456/0.406,
            std 0.229/0.224/0.225), RGB.

    Returns:
        Logits `[N, 1000]` float32.
    """
    return _imagenet_apply(ImageNetResNet(), variables, images)


# --------------------------------------------------------------------------- inflation
