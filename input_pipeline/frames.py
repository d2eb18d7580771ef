"""One frame preparation for every entry point: what the model sees of an image.

The dataset builders store each frame as JPEG at the dataset's frame size: an RGB JPEG
already at that size byte for byte, any other frame resized (bicubic, as the lineage
code) and encoded at quality 95. Training and `eval.py` decode those bytes. Everything
else that feeds the model frames (`reidjax.serving.inference.Embedder`,
`reidjax.serving.search`, `reidjax.serving.exported`, `reidjax.serving.tracks`) calls
`prepare_frame`, which returns exactly the decoded bytes a builder would have stored, so a
tracklet gets one feature whichever way it enters. Needs only NumPy and Pillow.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

JPEG_QUALITY = 95


class FrameError(ValueError):
    """An image that cannot be read, or an array that is not a uint8 RGB frame."""


def encode_frame(path: str, size: tuple[int, int]) -> tuple[bytes | None, str]:
    """Validates and encodes one frame as the builders store it; (bytes, "") or (None, why).

    An RGB JPEG already at `size` is stored byte for byte (no generation loss); any other
    frame is resized (bicubic, as the lineage code) and encoded as JPEG quality 95.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        image = Image.open(io.BytesIO(data))
        image.load()
        fmt, mode = image.format, image.mode
        image = image.convert("RGB")
    except Exception as e:  # PIL raises many types for truncated or corrupt files
        return None, f"{type(e).__name__}: {e}"
    height, width = size
    if image.size == (width, height) and fmt == "JPEG" and mode == "RGB":
        return data, ""
    return encode_array(np.asarray(image), size), ""


def encode_array(frame: np.ndarray, size: tuple[int, int]) -> bytes:
    """uint8 `[h, w, 3]` -> JPEG bytes at `size` (bicubic resize when needed)."""
    image = Image.fromarray(frame)
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def decode(data: bytes) -> np.ndarray:
    """JPEG (or any image) bytes -> uint8 RGB `[H, W, 3]`."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def prepare_frame(frame: str | os.PathLike | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One frame as uint8 `[H, W, 3]` at `size`, as the model sees it after a build.

    An image file: the decoded bytes a builder stores for it (`encode_frame`). A uint8
    array `[h, w, 3]` (decoded pixels, e.g. a crop of a video frame): used as it is at
    `size`, else resized and passed through the same JPEG quality-95 encoding the builders
    apply to a frame they resize.

    Raises:
        FrameError: an unreadable image (named) or an array of the wrong type or shape.
    """
    if isinstance(frame, str | os.PathLike):
        data, why = encode_frame(os.fspath(frame), size)
        if data is None:
            raise FrameError(f"cannot read image {frame}: {why}")
        return decode(data)
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise FrameError(f"a frame must be uint8 [h, w, 3], got {array.dtype} {array.shape}")
    if array.shape[:2] == tuple(size):
        return array
    return decode(encode_array(array, size))
