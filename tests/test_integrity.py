"""Checkpoint digests (reidjax.training.integrity): the sums against a NumPy reference, the same on
any mesh, and a byte flipped on disk that the storage decodes without error is caught on
restore, moved aside, and the previous step restored."""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec

from reidjax.training import checkpoint, integrity, restore


@struct.dataclass
class State:
    """A train state's layout (what `restore_newest_readable` and eval's reads expect)."""

    step: jax.Array
    params: dict
    batch_stats: dict


def reference(x: np.ndarray) -> list[int]:
    """s1 = Σ w_i, s2 = Σ (2i + 1) w_i mod 2^32 over the bytes as little-endian words of
    the item size (widened to 32 bits), in Python integers."""
    raw = np.ascontiguousarray(x).view({1: np.uint8, 2: np.uint16, 4: np.uint32}[x.itemsize])
    words = [int(w) for w in raw.reshape(-1)]
    s1 = sum(words) % 2**32
    s2 = sum((2 * i + 1) * w for i, w in enumerate(words)) % 2**32
    return [s1, s2]


def test_digests_equal_a_numpy_reference_for_every_dtype():
    rng = np.random.default_rng(0)
    tree = {
        "f32": rng.normal(size=(7, 5)).astype(np.float32),
        "bf16": np.asarray(jnp.asarray(rng.normal(size=(9,)), jnp.bfloat16)),
        "i32": rng.integers(-(2**31), 2**31 - 1, size=(4, 3), dtype=np.int32),
        "u8": rng.integers(0, 255, size=(11,), dtype=np.uint8),
        "bool": rng.random(6) > 0.5,
        "scalar": np.int32(3),
    }
    got = integrity.of(jax.tree.map(jnp.asarray, tree))
    for name, value in tree.items():
        value = np.asarray(value)
        value = value.astype(np.uint8) if value.dtype == bool else value
        assert got[name] == reference(value), name


def test_digests_are_the_same_on_any_mesh_and_see_every_flipped_bit():
    """Modular integer sums: replicated over 8 devices or sharded over them, the digest is
    the one of the single-device array. Any single flipped bit changes it."""
    rng = np.random.default_rng(1)
    value = rng.normal(size=(16, 24)).astype(np.float32)
    single = integrity.of({"w": jnp.asarray(value)})["w"]
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    spread = jax.device_put(value, NamedSharding(mesh, PartitionSpec("data")))
    copies = jax.device_put(value, NamedSharding(mesh, PartitionSpec()))
    assert integrity.of({"w": spread})["w"] == integrity.of({"w": copies})["w"] == single
    words = value.view(np.uint32).reshape(-1)
    for position in rng.integers(0, words.size * 32, size=20):
        flipped = words.copy()
        flipped[position // 32] ^= np.uint32(1 << (position % 32))
        assert integrity.of({"w": jnp.asarray(flipped.view(np.float32))})["w"] != single


def _state(seed: int) -> State:
    rng = np.random.default_rng(seed)
    return State(
        step=jnp.int32(seed),
        params={"w": jnp.asarray(rng.normal(size=(64, 300)).astype(np.float32))},
        batch_stats={"mean": jnp.asarray(rng.normal(size=(8,)).astype(np.float32))},
    )


def _abstract() -> State:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0))


def _silent_flip(directory: str, step: int, abstract) -> int:
    """Flips one byte of the step's largest data file at the first offset where orbax
    still reads the step without an error but with other values (the damage that reads
    back silently); returns the offset."""
    files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(directory, str(step)))
             for f in fs]  # fmt: skip
    largest = max(files, key=os.path.getsize)
    original = pathlib.Path(largest).read_bytes()
    saved = checkpoint.Checkpointer(directory, create=False)
    read = saved.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    expected = np.asarray(read.params["w"])
    saved.close()
    for offset in range(len(original) // 2, len(original), 97):
        damaged = bytearray(original)
        damaged[offset] ^= 0x10
        pathlib.Path(largest).write_bytes(damaged)
        reader = checkpoint.Checkpointer(directory, create=False)
        try:
            got = reader.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception:
            continue  # this flip breaks decoding: damage of another kind
        finally:
            reader.close()
        if not np.array_equal(np.asarray(got.params["w"]), expected):
            return offset
    raise AssertionError("no flip reads back silently")


def test_a_silently_flipped_byte_is_caught_moved_aside_and_the_previous_step_restored(tmp_path):
    directory = str(tmp_path / "checkpoints")
    ckpt = checkpoint.Checkpointer(directory, keep=3, save_every=1)
    for step in (2, 3):
        ckpt.save(step, _state(step), force=True)
    ckpt.close()
    _silent_flip(directory, 3, _abstract())

    ckpt = checkpoint.Checkpointer(directory, keep=3, save_every=1)
    state, origin = restore.restore_newest_readable(ckpt, _abstract())
    ckpt.close()
    assert int(state.step) == 2
    np.testing.assert_array_equal(state.params["w"], _state(2).params["w"])
    assert (
        "checkpoint step 3 is unreadable (1 array(s) read back with other bytes than were "
        "saved: params/w); moved to "
    ) in origin, origin
    damaged = tmp_path / "checkpoints_damaged"
    assert sorted(p.name for p in damaged.iterdir()) == ["3", "3.digests.json", "3.why.txt"]


def test_eval_reads_of_a_flipped_step_stop_in_one_line(tmp_path):
    """The partial restore of eval.py and fine-tuning verifies what it reads."""
    directory = str(tmp_path / "checkpoints")
    ckpt = checkpoint.Checkpointer(directory, keep=3, save_every=1)
    ckpt.save(3, _state(3), force=True)
    ckpt.close()
    _silent_flip(directory, 3, _abstract())
    with pytest.raises(
        integrity.DigestMismatchError, match=r"other bytes than were saved: params/w$"
    ):
        checkpoint.read_variables(directory, 3)


def test_a_step_without_digests_restores_unverified_and_old_digests_are_pruned(tmp_path):
    directory = str(tmp_path / "checkpoints")
    ckpt = checkpoint.Checkpointer(directory, keep=2, save_every=1)
    for step in (1, 2, 3):
        ckpt.save(step, _state(step), force=True)
    ckpt.wait()
    ckpt.save(4, _state(4), force=True)
    ckpt.close()
    assert sorted(os.listdir(os.path.join(directory, integrity.FOLDER))) == ["3.json", "4.json"]
    os.remove(integrity.path(directory, 4))  # as written by an older reidjax
    variables, step = checkpoint.read_variables(directory)
    assert step == 4
    np.testing.assert_array_equal(variables["params"]["w"], _state(4).params["w"])
