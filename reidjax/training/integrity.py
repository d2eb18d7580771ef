"""Digests of a checkpoint's arrays: a flipped bit on disk is caught on restore.

Each array's bytes are read as unsigned 32-bit words `w_i` (16- and 8-bit types widened,
64-bit ones split) and summed twice, modulo 2^32, on the device:

    s1 = Σ w_i        s2 = Σ (2i + 1) · w_i

Integer sums modulo 2^32 do not depend on the order of the additions, so the digest of an
array is the same on any mesh and device count (a checkpoint saved on 8 devices verifies
on 1). A change confined to one word (any flipped bit, any garbage word) changes `s1`,
always; a change spread over several words goes unseen only if both sums happen to come
out equal. This guards against damage, not against an adversary.

The digests of a step are written (`write`) to `<checkpoints>/digests/<step>.json` before
the step's own folder is saved, so every step folder written by reidjax has one; a step
without one (written by an older reidjax, or by other code) restores unverified.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from reidjax.errors import UserError

FOLDER = "digests"


class DigestMismatchError(UserError, ValueError):
    """A checkpoint's arrays read back with other bytes than were saved (a flipped bit):
    damage, like a truncated file (`checkpoint.diagnose`)."""


def leaf_name(path) -> str:
    """`params/backbone/conv1/kernel` for a pytree key path (attribute, key or index)."""
    parts = []
    for entry in path:
        for field in ("name", "key", "idx"):
            if hasattr(entry, field):
                parts.append(str(getattr(entry, field)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _words(x: jax.Array) -> jax.Array:
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)


def _digest(x: jax.Array) -> jax.Array:
    words = _words(x)
    weights = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
    return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * weights, dtype=jnp.uint32)])


@jax.jit
def _digests(leaves: list) -> list:
    return [_digest(x) for x in leaves]


def of(tree) -> dict[str, list[int]]:
    """{leaf name: [s1, s2]} for every array of `tree` (one small transfer to the host)."""
    named = jax.tree_util.tree_leaves_with_path(tree)
    values = jax.device_get(_digests([x for _, x in named]))
    pairs = zip(named, values, strict=True)
    return {leaf_name(key): [int(v) for v in np.asarray(d)] for (key, _), d in pairs}


def path(directory: str, step: int) -> str:
    return os.path.join(directory, FOLDER, f"{step}.json")


def write(directory: str, step: int, digests: dict[str, list[int]]) -> None:
    """Writes the digests of `step` atomically (a temporary file, then a rename)."""
    target = epath.Path(path(directory, step))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{step}.json.tmp"
    partial.write_text(json.dumps(digests, sort_keys=True))
    partial.replace(target)  # a killed save of this step left one


def read(directory: str, step: int) -> dict[str, list[int]] | None:
    """The digests written with `step`, or None: none were (or they cannot be parsed, which
    the caller reports like a mismatch)."""
    source = epath.Path(path(directory, step))
    if not source.exists():
        return None
    try:
        return json.loads(source.read_text())
    except (ValueError, OSError):
        return {}


def mismatches(expected: dict[str, list[int]], tree) -> list[str]:
    """The leaves of `tree` whose digest differs from `expected` (leaves `expected` lacks
    count too; `expected` may hold more, for a partial restore)."""
    got = of(tree)
    return [name for name, digest in got.items() if expected.get(name) != digest]


def prune(directory: str, keep: set[int]) -> None:
    """Removes the digests of steps that are no longer kept."""
    folder = epath.Path(directory) / FOLDER
    if not folder.exists():
        return
    for item in folder.iterdir():
        stem = item.name.removesuffix(".json")
        if stem.isdigit() and int(stem) not in keep:
            item.unlink(missing_ok=True)


def save(directory: str, step: int, state, kept: set[int]) -> None:
    """The digests of `state` for `step`, computed on every process (a jitted program),
    written by process 0, with those of steps no longer kept removed."""
    digests = of(state)
    if jax.process_index() == 0:
        write(directory, step, digests)
        prune(directory, kept | {step})


def verify(directory: str, step: int, restored) -> None:
    """Compares the arrays restored from `step` with the digests written with it (a step
    without digests passes: written by an older reidjax).

    Raises:
        DigestMismatchError: naming the arrays that differ.
    """
    expected = read(directory, step)
    if expected is None:
        return
    if not expected:
        raise DigestMismatchError(f"its digest file {path(directory, step)} is damaged")
    bad = mismatches(expected, restored)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DigestMismatchError(
            f"{len(bad)} array(s) read back with other bytes than were saved: {shown}"
        )
