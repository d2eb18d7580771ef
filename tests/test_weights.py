"""Weight conversion: PyTorch parity through .pth/.npz/.safetensors, and clear errors."""

import collections
import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from reidjax.config.config_lib import base_config
from reidjax.experiment import build_module
from reidjax.models.factory import dummy_clips
from reidjax.pretrained import inflation, pth, weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import torch

    from bench.torch_resnet import TorchResNet, randomize_bn
except ImportError:  # the tests marked `torch` are skipped (conftest.py)
    torch = None

pytestmark = pytest.mark.torch  # most tests read files that torch itself writes
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def torch_resnet50(tmp_path_factory):
    """A torchvision-named ResNet-50 with random weights and BN statistics, saved as .pth."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = TorchResNet(dims=2).eval()
    randomize_bn(model, g)
    with torch.no_grad():  # Larger logits than the default fc init: a stricter comparison.
        model.fc.weight.mul_(20.0)
        model.fc.bias.copy_(torch.randn(1000, generator=g))
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def state_dict(torch_resnet50):
    return {k: v.numpy() for k, v in torch_resnet50[0].state_dict().items()}


def _images():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 64, 64, 3)).astype(np.float32)


def _torch_logits(model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()


def test_pth_npz_safetensors_give_pytorch_logits(torch_resnet50, state_dict, tmp_path):
    model, pth = torch_resnet50
    images = _images()
    ref = _torch_logits(model, images)
    assert np.abs(ref).max() > 1.0
    npz = tmp_path / "r50.npz"
    np.savez(npz, **state_dict)
    st = tmp_path / "r50.safetensors"
    save_file(state_dict, str(st))
    # timm's `resnet50.tv_in1k` publishes these weights as model.safetensors under the same
    # names, without BN's num_batches_tracked counters.
    timm = tmp_path / "model.safetensors"
    save_file({k: v for k, v in state_dict.items() if "num_batches" not in k}, str(timm))
    for path in (pth, npz, st, timm):
        variables = weights.load_torchvision_resnet50(path)
        logits = np.asarray(weights.imagenet_logits(variables, images))
        assert logits.shape == (3, 1000)
        assert np.abs(logits - ref).max() <= 1e-4, path


def test_convert_cli_roundtrip(torch_resnet50, tmp_path):
    model, pth = torch_resnet50
    out = tmp_path / "converted.npz"
    result = subprocess.run(
        [sys.executable, "tools/convert_weights.py", "--input", str(pth), "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "25,557,032" in result.stdout
    images = _images()
    logits = weights.imagenet_logits(weights.load_torchvision_resnet50(out), images)
    assert np.abs(np.asarray(logits) - _torch_logits(model, images)).max() <= 1e-4
    failed = subprocess.run(
        [sys.executable, "tools/convert_weights.py", "--input", str(tmp_path / "no.pth"),
         "--output", str(tmp_path / "x.npz")],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode != 0 and "not found" in failed.stderr
    assert not (tmp_path / "x.npz").exists()


def test_module_prefix_and_wrapped_state_dict(torch_resnet50, tmp_path):
    model, _ = torch_resnet50
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    variables = weights.load_torchvision_resnet50(path)
    images = _images()
    logits = np.asarray(weights.imagenet_logits(variables, images))
    assert np.abs(logits - _torch_logits(model, images)).max() <= 1e-4


def test_missing_file_says_what_to_download(tmp_path):
    with pytest.raises(weights.WeightFileError, match=r"not found.*resnet50-19c8e357\.pth"):
        weights.read_state_dict(tmp_path / "resnet50_imagenet.npz")


def test_unknown_suffix(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(weights.WeightFileError, match=r"Unknown weight file type '\.h5'"):
        weights.read_state_dict(path)


@pytest.mark.parametrize("suffix", [".pth", ".npz", ".safetensors"])
def test_truncated_files_raise_clear_error(torch_resnet50, state_dict, tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    if suffix == ".pth":
        full.write_bytes(torch_resnet50[1].read_bytes())
    elif suffix == ".npz":
        np.savez(full, **state_dict)
    else:
        save_file(state_dict, str(full))
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(weights.WeightFileError, match="corrupt or truncated"):
        weights.load_torchvision_resnet50(cut)
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(weights.WeightFileError, match="corrupt or truncated"):
        weights.load_torchvision_resnet50(garbage)


def test_missing_unexpected_and_mismatched_tensors(state_dict, tmp_path):
    broken = dict(state_dict)
    del broken["layer3.1.conv2.weight"]
    broken["layer2.0.bn1.weight"] = np.ones(7, np.float32)
    broken["layer1.0.extra.weight"] = np.ones((4, 4), np.float32)
    path = tmp_path / "broken.npz"
    np.savez(path, **broken)
    with pytest.raises(weights.WeightFileError) as info:
        weights.load_torchvision_resnet50(path)
    msg = str(info.value)
    assert "does not fit the model (3 differences" in msg and "\n" not in msg
    assert "missing params/backbone/layer3_1/conv2/kernel (1, 3, 3, 256, 256)" in msg
    assert "unexpected params/backbone/layer1_0/extra/kernel (4, 4)" in msg
    assert "params/backbone/layer2_0/bn1/scale: file (7,), model (128,)" in msg


def test_non_tensor_entry_in_pth(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(weights.WeightFileError, match="'epoch' is a int, not a tensor"):
        weights.read_state_dict(path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pth_read_without_torch_in_both_formats(tmp_path, zip_format):
    """Files torch itself writes, in the zip format (torch >= 1.6) and the legacy one of
    torchvision's resnet50-19c8e357.pth, read in a process where torch is never imported:
    every dtype a state_dict holds, a non-contiguous tensor and two views of one storage."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    tensors = {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "half": torch.randn(3, generator=g).half(),
        "bf16": torch.randn(3, generator=g).bfloat16(),
        "mask": torch.tensor([True, False, True]),
        "int32": torch.arange(5, dtype=torch.int32),
        "transposed": base.t(),
        "row2": base[2],
        "tail": base.view(-1)[7:19].view(3, 4),
    }
    path = tmp_path / "w.pth"
    torch.save(collections.OrderedDict(tensors), path, _use_new_zipfile_serialization=zip_format)
    out = tmp_path / "read.npz"
    code = (
        "import sys, numpy as np; from reidjax.pretrained import weights; "
        f"s = weights.read_state_dict({str(path)!r}); "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        f"np.savez({str(out)!r}, **{{k: v.view(np.uint16) if v.dtype.name == 'bfloat16' "
        "else v for k, v in s.items()}, names=np.array(list(s)))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    with np.load(out) as got:
        assert list(got["names"]) == list(tensors)
        for name, tensor in tensors.items():
            want = (
                tensor.view(torch.int16).numpy().view(np.uint16)
                if tensor.dtype == torch.bfloat16
                else tensor.numpy()
            )
            assert got[name].dtype == want.dtype, name
            np.testing.assert_array_equal(got[name], want, err_msg=name)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_before_anything_runs(tmp_path):
    """A .pth whose pickle calls os.system (in either format) is refused with a clear
    error, and the command never runs."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conv1.weight": _Exploit(marker)}, protocol=2)
    legacy = tmp_path / "legacy.pth"
    header = [pickle.dumps(x, protocol=2) for x in (pth.LEGACY_MAGIC, pth.LEGACY_PROTOCOL, {})]
    legacy.write_bytes(b"".join(header) + payload + pickle.dumps([], protocol=2))
    archive = tmp_path / "zip.pth"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    for path in (legacy, archive):
        with pytest.raises(pth.UnsafePickleError, match=r"names posix\.system|names os\.system"):
            weights.read_state_dict(path)
        assert not marker.exists()


def test_startup_inflation_into_configured_backbone(state_dict, tmp_path):
    """`config.init.imagenet` path: every trunk tensor is copied or inflated, heads kept."""
    path = tmp_path / "r50.npz"
    np.savez(path, **state_dict)
    config = base_config()
    config.model.variant = "i3d"
    config.model.num_classes = 10
    model = build_module(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy_clips(config)))
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    variables, report = inflation.load_imagenet(path, target)
    assert len(report.inflated) == 5  # conv2 of layer2 {0, 2} and layer3 {0, 2, 4}
    assert report.kept_init == []
    assert report.unused == ["params/fc/bias", "params/fc/kernel"]
    k = variables["params"]["backbone"]["layer3_2"]["conv2"]["kernel"]
    np.testing.assert_array_equal(k[1], state_dict["layer3.2.conv2.weight"].transpose(2, 3, 1, 0))
    assert not k[0].any() and not k[2].any()
    np.testing.assert_array_equal(
        variables["batch_stats"]["backbone"]["bn1"]["var"], state_dict["bn1.running_var"]
    )
    assert "inflated to 3D" in report.summary()


def test_resnet50_weights_into_tiny_arch_fail_clearly(state_dict):
    config = base_config()
    config.model.arch = "tiny"
    config.model.num_classes = 10
    model = build_module(config)
    target = jax.eval_shape(model.init, jax.random.key(0), dummy_clips(config))  # shapes suffice
    source = weights.torch_to_flax(state_dict)
    with pytest.raises(weights.WeightFileError, match=r"model\.arch='resnet50'"):
        inflation.inflate(source, target)


def _convert(src, dst):
    return subprocess.run(
        [sys.executable, "tools/convert_weights.py", "--input", str(src), "--output", str(dst)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_converter_takes_reid_checkpoints_with_any_classifier(torch_resnet50, tmp_path):
    """A torchreid `.pth.tar` (state_dict inside, a 751-way `classifier`, epoch and
    optimizer beside it), a 751-way `fc` and no classifier at all all convert: the trunk is
    the same as torchvision's file's, the head is dropped and said so."""
    model, _ = torch_resnet50
    full = weights.load_torchvision_resnet50(torch_resnet50[1])
    trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    g = torch.Generator().manual_seed(1)
    cases = {
        "torchreid.pth.tar": {
            "state_dict": {**trunk, "classifier.weight": torch.randn(751, 2048, generator=g),
                           "classifier.bias": torch.zeros(751)},
            "epoch": 60, "rank1": 0.85,
            "optimizer": {"state": {0: {"step": torch.tensor(3.0)}},
                          "param_groups": [{"lr": 3e-4, "params": [0]}]},
        },
        "fc751.pth": {**trunk, "fc.weight": torch.randn(751, 2048, generator=g),
                      "fc.bias": torch.zeros(751)},
        "trunk.pth": dict(trunk),
        "wrapped.pth": {f"base.{k}": v for k, v in trunk.items()},
    }  # fmt: skip
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
        result = _convert(tmp_path / name, tmp_path / f"{name}.npz")
        assert result.returncode == 0, (name, result.stderr)
        assert "trunk, no classifier" in result.stdout, result.stdout
        if name in ("torchreid.pth.tar", "fc751.pth"):
            assert "(751-way)" in result.stdout and "dropped" in result.stdout
        loaded = weights.load_torchvision_resnet50(tmp_path / f"{name}.npz")
        assert "fc" not in loaded["params"]
        for a, b in zip(
            jax.tree.leaves(loaded["params"]["backbone"]),
            jax.tree.leaves(full["params"]["backbone"]),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
        # training reads the same files directly
        direct = weights.load_torchvision_resnet50(tmp_path / name)
        assert jax.tree.structure(direct) == jax.tree.structure(loaded)


def test_converter_explains_what_is_not_a_resnet50(torch_resnet50, tmp_path):
    """A state_dict of another network is named in its own terms; a pickled whole model is
    recognised as such (and not unpickled)."""
    small = {
        "conv1.weight": torch.zeros(64, 3, 7, 7),
        "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3),
        "layer1.1.conv1.weight": torch.zeros(64, 64, 3, 3),
        "fc.weight": torch.zeros(10, 512),
    }
    torch.save(small, tmp_path / "resnet18ish.pth")
    result = _convert(tmp_path / "resnet18ish.pth", tmp_path / "x.npz")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "is not a torchvision ResNet-50 state_dict" in message
    assert "named like conv1.weight, layer1.0.conv1.weight" in message
    assert "layer1: 2, layer2: 0" in message and "no bottleneck conv3" in message
    assert "params/" not in message  # torch names, not Flax paths
    torch.save(torch_resnet50[0], tmp_path / "whole.pth")
    result = _convert(tmp_path / "whole.pth", tmp_path / "y.npz")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "holds a whole pickled PyTorch model" in result.stderr
    assert "torch.save(model.state_dict()" in result.stderr
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()
