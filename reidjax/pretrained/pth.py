"""Reads PyTorch `torch.save` files of tensors without PyTorch, and without running code.

Both formats torchvision publishes weights in are read:

- the zip format (torch >= 1.6, e.g. `resnet50-0676ba61.pth`): `<name>/data.pkl` is the
  pickled object, each storage a file `<name>/data/<key>`;
- the legacy format (e.g. `resnet50-19c8e357.pth`): five pickles in a row (magic number,
  protocol version, system info, the object, the storage keys), then each storage as an
  int64 element count and its raw bytes.

The pickle is read by a restricted unpickler: it resolves only `collections.OrderedDict`,
the tensor rebuild functions and the storage types, each mapped to a NumPy stand-in, and
refuses every other global (a pickle naming `os.system` or `builtins.eval` stops with an
error before anything is called). Tensors come back as NumPy arrays (little-endian hosts).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from reidjax.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(UserError, ValueError):
    """The file's pickle names something other than tensors and dicts."""

    def __init__(self, message: str, global_name: str = ""):
        super().__init__(message)
        self.global_name = global_name  # `module.name` the pickle asked for, if any


# What a pickled whole `nn.Module` names, and a state_dict never does.
_MODEL_GLOBALS = ("torch._utils._rebuild_parameter", "torch.nn.modules.")


def is_whole_model(path: str) -> bool:
    """Whether the `torch.save` file at `path` holds a whole model (`torch.save(model)`)
    rather than a state_dict: its pickle names `nn.Module` classes or parameters. The
    pickle is scanned, never run."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(names[0]) if names else b""
        else:
            with open(path, "rb") as f:
                data = f.read()
        found, strings = [], []
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(arg))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a truncated or foreign stream: not recognisably a model
        return False
    return any(g.startswith(_MODEL_GLOBALS) for g in found)


class _Storage:
    """A storage of the file, filled in once its bytes are read."""

    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel
        self.array: np.ndarray | None = None


class _Tensor:
    """A tensor waiting for its storage (legacy files store the bytes after the pickle)."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise ValueError(f"storage {self.storage.key} has no data")
        if self.size and self.offset + sum((n - 1) * s for n, s in zip(
                self.size, self.stride, strict=True)) >= len(data):  # fmt: skip
            raise ValueError(f"a tensor overruns its storage {self.storage.key}")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], self.size, tuple(s * item for s in self.stride), writeable=False
        )
        return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):  # fmt: skip
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, storage_offset, size, stride)


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file)
        self.path, self.storages = path, {}

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise UnsafePickleError(
            f"refusing to load {self.path!r}: its pickle names {module}.{name}, and a weight "
            "file may hold only tensors and dicts (a file naming anything else can run code "
            "when unpickled)",
            f"{module}.{name}",
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"{self.path!r}: unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"{self.path!r}: unexpected storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise ValueError("storage views (files of PyTorch < 0.4) are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, key, numel)
        return self.storages[key]


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _Tensor):
        return obj.materialize()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).decode().strip() != "little":
            raise ValueError("big-endian tensor files are not supported")
        unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), path)
        obj = unpickler.load()
        for key, storage in unpickler.storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.array = np.frombuffer(raw, storage.dtype, count=storage.numel)
    return obj


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        header = [_Unpickler(f, path).load() for _ in range(3)]
        if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
            raise ValueError("not a PyTorch file (neither a zip archive nor the legacy format)")
        if not header[2].get("little_endian", True):
            raise ValueError("big-endian tensor files are not supported")
        unpickler = _Unpickler(f, path)
        obj = unpickler.load()
        keys = _Unpickler(f, path).load()
        for key in keys:
            storage = unpickler.storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise ValueError(f"storage {key} is truncated")
            storage.array = np.frombuffer(raw, storage.dtype, count=numel)
    return obj


def load(path: str | os.PathLike) -> Any:
    """The object saved by `torch.save` at `path`, with tensors as NumPy arrays.

    Raises:
        UnsafePickleError: the pickle names anything but tensors, storages and dicts.
        ValueError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError: not a readable
            PyTorch file (the caller wraps these into one message).
    """
    path = os.fspath(path)
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    return _materialize(obj)
