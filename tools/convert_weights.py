"""Converts torchvision's ImageNet ResNet-50 `.pth` into a pickle-free `.npz`/`.safetensors`.

Training reads the `.pth` itself (without PyTorch); this copy is for those who prefer a
file format that involves no unpickling at all:

    python tools/convert_weights.py --input resnet50-19c8e357.pth \
        --output resnet50_imagenet.npz
    python train.py --config configs/p3dc_mars.py \
        --config.init.imagenet=resnet50_imagenet.npz ...

Also takes re-ID checkpoints of a ResNet-50: torchreid's `.pth.tar` (the `state_dict`
inside is read; epoch and optimizer are ignored), a `base.` / `module.` prefix, any
classifier (751-way, or none): the trunk is kept, and the ImageNet fc when there is one;
training uses the trunk only. The tensors keep torchvision's names. The file is validated
against the ResNet-50 layout before it is written (a state_dict of another network is
named in its own tensor names; a pickled whole model is recognised, and not unpickled),
and written atomically (a temporary file renamed at the end).
"""

import os
import sys
import tempfile

import numpy as np
from absl import app, flags

from reidjax import cli
from reidjax.pretrained import weights

_INPUT = flags.DEFINE_string("input", None, "torchvision ResNet-50 weights (.pth/.npz/...).")
_OUTPUT = flags.DEFINE_string("output", None, "Output file: .npz or .safetensors.")
flags.mark_flags_as_required(["input", "output"])


def convert(src: str, dst: str) -> dict:
    """Reads, validates and writes the weights; returns counts for the report."""
    suffix = os.path.splitext(dst)[1].lower()
    if suffix not in (".npz", ".safetensors"):
        raise weights.WeightFileError(f"--output must end in .npz or .safetensors, got {dst!r}")
    state, note = weights.resnet50_state_dict(weights.read_state_dict(src), f"{src!r}")
    weights.resnet50_variables(state, f"Weight file {src!r}")
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    directory = os.path.dirname(os.path.abspath(dst))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=directory, prefix=".convert-")
    try:
        with os.fdopen(fd, "wb") as f:
            if suffix == ".npz":
                np.savez(f, **state)
        if suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(state, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    params = sum(
        v.size
        for k, v in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    return {
        "tensors": len(state),
        "params": int(params),
        "bytes": os.path.getsize(dst),
        "fc": "fc.weight" in state,
        "note": note,
    }


def main(argv):
    del argv
    try:
        info = convert(_INPUT.value, _OUTPUT.value)
    except weights.WeightFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    head = "with ImageNet fc" if info["fc"] else "trunk, no classifier"
    print(
        f"wrote {_OUTPUT.value}: {info['tensors']} tensors, {info['params']:,} parameters "
        f"(ResNet-50, {head}), {info['bytes'] / 2**20:.1f} MiB"
        + (f"; {info['note']}" if info["note"] else "")
    )
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
