"""Files of a workdir on a local disk or a bucket (`gs://...`), through `etils.epath`.

Every file reidjax writes into a workdir besides the orbax checkpoints (config.json,
metrics.jsonl, the evaluation reports and pictures, features.npz) goes through here, so a
`gs://` workdir (a multi-host Cloud TPU slice without a shared disk) works wherever epath
does. Local files are written to a temporary name and renamed (a reader never sees half a
file); a bucket object is written whole in one request, which is atomic by itself.
"""

from __future__ import annotations

import os

from etils import epath


def is_local(path: str | os.PathLike) -> bool:
    """A plain path (not `scheme://...`)."""
    return "://" not in os.fspath(path)


def makedirs(path: str | os.PathLike) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def exists(path: str | os.PathLike) -> bool:
    return epath.Path(path).exists()


def read_text(path: str | os.PathLike) -> str:
    return epath.Path(path).read_text()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` whole (creating its folder)."""
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_local(path):
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        target.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())
