"""What a failed checkpoint read means: damage moves the step aside, anything else stops
with one line and moves nothing (the messages are the ones orbax, tensorstore and the OS
raised for each damage in a probe of real damaged checkpoints)."""

import itertools
import json

import pytest

from reidjax.training import checkpoint, restore


def chained(*errors):
    """errors[0] raised while handling errors[1], ... (as orbax wraps tensorstore)."""
    for outer, inner in itertools.pairwise(errors):
        outer.__context__ = inner
    return errors[0]


DAMAGE = {
    "missing _METADATA": AttributeError("'NoneType' object has no attribute 'tree'"),
    "missing default/": ValueError(
        "Unable to retrieve default item. Please ensure that a handler for the default item "
        "is registered using `handler_registry` when initializing the `CheckpointManager`."
    ),
    "missing default/ (restore)": KeyError('Item "default" was not found in the checkpoint.'),
    "empty _METADATA": chained(json.JSONDecodeError("Expecting value", "", 0), StopIteration(0)),
    "truncated data": chained(
        Exception("Encountered error while reading array index"),
        ValueError('OUT_OF_RANGE: Error reading "opt_state.1.nu..." in OCDBT database'),
    ),
    "missing manifest": ValueError('NOT_FOUND: Error opening "zarr" driver: Metadata at ...'),
}
NOT_DAMAGE = {
    "permission": (
        chained(ValueError("restore failed"), PermissionError(13, "denied")),
        "permission",
    ),
    "permission (tensorstore)": (ValueError("PERMISSION_DENIED: Error reading ..."), "permission"),
    "out of memory": (ValueError("RESOURCE_EXHAUSTED: Out of memory allocating"), "memory"),
    "unreachable bucket": (ValueError("UNAVAILABLE: connection reset"), "did not answer"),
    "timeout": (TimeoutError("read timed out"), "did not answer"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damage_is_named_in_plain_words(name):
    damaged, words = checkpoint.diagnose(DAMAGE[name])
    assert damaged, name
    assert "Error" not in words and "NoneType" not in words and "StopIteration" not in words


@pytest.mark.parametrize("name", list(NOT_DAMAGE))
def test_what_is_not_damage_moves_nothing(name):
    error, word = NOT_DAMAGE[name]
    damaged, words = checkpoint.diagnose(error)
    assert not damaged and word in words, words


def test_an_unrecognised_error_is_not_damage():
    damaged, words = checkpoint.diagnose(RuntimeError("something new"))
    assert not damaged and "something new" in words


class FakeCheckpointer:
    """Steps 2 and 4; reading step 4 raises `error`; records what was moved."""

    directory = "/runs/x/checkpoints"

    def __init__(self, error):
        self.error, self.moved = error, []

    def steps(self):
        return [2, 4]

    def check_matches(self, params, step):
        pass

    def restore(self, abstract, step):
        if step == 4:
            raise self.error
        return f"state of step {step}"

    def move_aside(self, step, cause):
        self.moved.append(step)
        return f"{self.directory}_damaged/{step}"


class Abstract:
    params = None


def test_a_permission_error_stops_in_one_line_and_moves_nothing():
    ckpt = FakeCheckpointer(chained(ValueError("x"), PermissionError(13, "Permission denied")))
    with pytest.raises(checkpoint.CheckpointReadError) as caught:
        restore.restore_newest_readable(ckpt, Abstract())
    message = str(caught.value)
    assert message.startswith("cannot read checkpoint step 4 in /runs/x/checkpoints: no permission")
    assert "nothing was moved" in message and "\n" not in message
    assert ckpt.moved == []


def test_damage_moves_the_step_aside_once_and_resumes_from_the_previous():
    ckpt = FakeCheckpointer(DAMAGE["truncated data"])
    state, origin = restore.restore_newest_readable(ckpt, Abstract())
    assert state == "state of step 2" and ckpt.moved == [4]
    assert origin.count("checkpoint step 4 is unreadable") == 1
    assert "(a data file is cut short or corrupt)" in origin


def test_a_damaged_parameter_list_falls_back_when_an_older_step_matches():
    """One entry missing from the newest step's _METADATA reads as another model's
    checkpoint; an older step of the same workdir that matches shows it is damage."""

    class Mismatched(FakeCheckpointer):
        def check_matches(self, params, step):
            if step == 4:
                raise checkpoint.CheckpointMismatchError("written by a different model")

    ckpt = Mismatched(None)
    state, origin = restore.restore_newest_readable(ckpt, Abstract())
    assert state == "state of step 2" and ckpt.moved == [4]
    assert "differs from the run's other steps" in origin

    class AllMismatched(FakeCheckpointer):
        def check_matches(self, params, step):
            raise checkpoint.CheckpointMismatchError("written by a different model")

    ckpt = AllMismatched(None)
    with pytest.raises(checkpoint.CheckpointMismatchError):
        restore.restore_newest_readable(ckpt, Abstract())
    assert ckpt.moved == []


def test_small_replicated_arrays_are_written_whole(tmp_path):
    """On 8 devices, an array replicated over all of them is written in one slice per
    replica only when a slice reaches `checkpoint.MIN_SLICE_BYTES`; a small one (a BN
    vector) is one chunk. Both read back exactly."""
    import jax
    import numpy as np
    import tensorstore as ts

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    rows = 8 * checkpoint.MIN_SLICE_BYTES // (4 * 16)  # 8 slices of MIN_SLICE_BYTES
    state = {
        "small": jax.device_put(np.arange(8, dtype=np.float32), replicated),
        "large": jax.device_put(np.ones((rows, 16), np.float32), replicated),
    }
    ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
    ckpt.save(1, state, force=True)
    ckpt.wait()
    base = f"file://{tmp_path}/checkpoints/1/{checkpoint.ITEM}/"
    keys = ts.KvStore.open({"driver": "ocdbt", "base": base}).result().list().result()
    chunks = {name: sum(k.startswith(f"{name}/".encode()) and not k.endswith(b".zarray")
                        for k in keys) for name in state}  # fmt: skip
    assert chunks == {"small": 1, "large": 8}, chunks
    back = ckpt.restore(state)
    ckpt.close()
    for name, value in state.items():
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(value))
