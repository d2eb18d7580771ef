"""Sampling and grain pipelines: batch composition, determinism, resume, hosts, eval cover."""

import io

import numpy as np
import pytest
from PIL import Image

from input_pipeline.augment import apply_augmentation
from input_pipeline.build import build_dataset
from input_pipeline.pipelines import (
    EvalBatches,
    TrainSpec,
    eval_dataset,
    iterate,
    train_dataset,
    worker_kind,
)
from input_pipeline.registry import load_dataset
from input_pipeline.sampling import (
    IdentitySampler,
    TrackletChunkSampler,
    augment_clip,
    augment_params,
    dense_clips,
    random_erasing_box,
    rrs_test_indices,
    temporal_indices,
)
from tests import fixtures
from tests.fixtures import write_image


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """7 identities with 1-4 tracklets of 1-13 frames each, built at 16×8 (folder layout)."""
    root = tmp_path_factory.mktemp("pipe")
    rng = np.random.default_rng(0)
    for split, pids in (
        ("train", range(7)),
        ("query", range(100, 103)),
        ("gallery", range(100, 104)),
    ):
        for pid in pids:
            for k in range(1 + (pid * 7 + 3) % 4):
                n = 1 + (pid * 5 + k * 3) % 13
                for f in range(n):
                    write_image(
                        str(root / "src" / split / str(pid) / f"{k % 3}_{k}" / f"{f:03d}.jpg"), rng
                    )
    return build_dataset(
        "folder", "fixture_16x8", str(root / "tfds"), str(root / "src"), workers=1, quiet=True
    )


def reference_batch(data, spec, step):
    """Global batch `step` as the previous pipeline defined it: PIL decodes each frame
    into its own array, `augment_clip` returns a new clip, the batch is stacked."""
    index = data.splits["train"]
    tracklets = TrackletChunkSampler(
        index.pid, spec.ids_per_batch, spec.clips_per_id, spec.seed
    ).batch(step)
    clips = []
    for position, t in enumerate(tracklets):
        rng = np.random.default_rng([spec.seed, 2, step, position])
        frames = temporal_indices(
            int(index.count[t]), spec.num_frames, spec.sampler, rng, spec.frame_stride
        )
        clip = np.stack(
            [
                np.asarray(Image.open(io.BytesIO(data.encoded(index.first[t] + f))).convert("RGB"))
                for f in frames
            ]
        )
        clips.append(augment_clip(clip, rng, spec.flip_prob, spec.erasing_prob))
    return np.stack(clips), index.pid[tracklets]


SPEC = TrainSpec(ids_per_batch=3, clips_per_id=2, num_frames=4, sampler="stride", seed=5)


def test_batches_have_p_distinct_ids_times_k(data):
    spec = TrainSpec(**{**SPEC.__dict__, "batch_sampler": "identities"})
    ds = train_dataset(data, spec, num_steps=6)
    for batch in ds:
        labels = batch["labels"]
        assert batch["clips"].shape == (6, 4, 16, 8, 3) and batch["clips"].dtype == np.uint8
        assert len(set(labels)) == 3
        assert all(np.sum(labels == pid) == 2 for pid in set(labels))
        assert list(labels) == sorted(labels, key=list(dict.fromkeys(labels)).index)


def test_same_seed_same_batches_and_resume(data):
    full = list(train_dataset(data, SPEC, num_steps=5))
    again = list(train_dataset(data, SPEC, num_steps=5))
    resumed = list(train_dataset(data, SPEC, start_step=3, num_steps=2, debug=True))
    for a, b in zip(full, again, strict=True):
        np.testing.assert_array_equal(a["clips"], b["clips"])
    for i, (a, b) in enumerate(zip(full[3:], resumed, strict=True)):
        assert "step" not in a and b["step"] == 3 + i
        np.testing.assert_array_equal(a["clips"], b["clips"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    threaded = iterate(train_dataset(data, SPEC, num_steps=5), 2, "threads")
    for a, b in zip(full, threaded, strict=True):
        np.testing.assert_array_equal(a["clips"], b["clips"])
    other = next(iter(train_dataset(data, TrainSpec(**{**SPEC.__dict__, "seed": 6}), num_steps=1)))
    assert not np.array_equal(other["clips"], full[0]["clips"])


def test_two_hosts_slices_form_the_single_host_batch(data):
    single = train_dataset(data, SPEC, num_steps=3)
    host0 = train_dataset(data, SPEC, num_steps=3, process_index=0, process_count=2)
    host1 = train_dataset(data, SPEC, num_steps=3, process_index=1, process_count=2)
    for s, a, b in zip(single, host0, host1, strict=True):
        assert a["clips"].shape[0] == b["clips"].shape[0] == 3
        np.testing.assert_array_equal(np.concatenate([a["clips"], b["clips"]]), s["clips"])
        np.testing.assert_array_equal(np.concatenate([a["labels"], b["labels"]]), s["labels"])
    with pytest.raises(ValueError, match="not divisible by 4 hosts"):
        train_dataset(data, SPEC, process_count=4)


def test_identity_sampler_epochs_cover_ids_and_replacement():
    pids = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    sampler = IdentitySampler(pids, ids_per_batch=2, clips_per_id=3, seed=0)
    assert sampler.steps_per_epoch == 3
    seen = set()
    for step in range(3):
        batch = sampler.batch(step)
        seen |= set(pids[batch])
        assert all(np.all(pids[batch[i * 3 : i * 3 + 3]] == pids[batch[i * 3]]) for i in range(2))
    assert seen == {0, 1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="cannot fill"):
        IdentitySampler(pids, ids_per_batch=7, clips_per_id=1, seed=0)


def ap3d_temporal_random_crop(n, size, stride, rng):
    """AP3D `transforms/temporal_transforms.py` `TemporalRandomCrop`, its branches as
    written (random draws from a NumPy generator instead of `random` and `np.random`)."""
    frame_indices = list(range(n))
    if len(frame_indices) >= size * stride:
        rand_end = len(frame_indices) - (size - 1) * stride - 1
        begin_index = int(rng.integers(0, rand_end + 1))
        return frame_indices[begin_index : begin_index + (size - 1) * stride + 1 : stride], "crop"
    index = np.sort(rng.choice(len(frame_indices), size=size, replace=len(frame_indices) < size))
    return [frame_indices[i] for i in index], "random"


@pytest.mark.parametrize("n", [3, 4, 24, 25, 31, 32, 33, 100])
def test_stride_sampler_follows_ap3d_branches(n):
    """Default ("lineage"): the branch AP3D takes for every length, and the same support
    (a strided clip from any start; distinct sorted frames; with replacement below T)."""
    rng = np.random.default_rng(n)
    for _ in range(200):
        got = temporal_indices(n, 4, "stride", rng, stride=8)
        want, branch = ap3d_temporal_random_crop(n, 4, 8, rng)
        strided = bool(np.all(np.diff(got) == 8))
        if branch == "crop":
            assert strided and 0 <= got[0] <= n - 25
        else:
            assert len(want) == 4 and np.all(np.diff(got) >= 0) and got.max() < n
            if n >= 4:
                assert len(set(got.tolist())) == 4
    # Lengths 25-31: AP3D draws random frames where the "span" rule strides.
    if 25 <= n < 32:
        picks = [temporal_indices(n, 4, "stride", rng, stride=8) for _ in range(50)]
        assert not all(np.all(np.diff(p) == 8) for p in picks)
    with pytest.raises(ValueError, match="stride threshold"):
        temporal_indices(n, 4, "stride", rng, threshold="ap3d")


@pytest.mark.parametrize("n", [1, 3, 4, 24, 25, 100])
def test_temporal_samplers(n):
    rng = np.random.default_rng(n)
    for sampler in ("stride", "rrs", "evenly"):
        idx = temporal_indices(n, 4, sampler, rng, stride=8)
        assert idx.shape == (4,) and idx.min() >= 0 and idx.max() < n
        assert np.all(np.diff(idx) >= 0)
    if n >= 25:  # the clip's span: strided under the "span" rule
        idx = temporal_indices(n, 4, "stride", rng, stride=8, threshold="span")
        assert np.all(np.diff(idx) == 8)
    if n >= 32:  # T·stride: strided under AP3D's rule, the default
        idx = temporal_indices(n, 4, "stride", rng, stride=8)
        assert np.all(np.diff(idx) == 8)
    if n >= 4:
        rrs = temporal_indices(n, 4, "rrs", rng)
        edges = np.floor(np.linspace(0, n, 5)).astype(int)
        assert all(edges[i] <= rrs[i] < edges[i + 1] for i in range(4))
        assert len(set(temporal_indices(n, 4, "stride", rng, stride=100))) == 4
    with pytest.raises(ValueError, match="valid"):
        temporal_indices(n, 4, "random", rng)


def test_augmentation_is_clip_consistent():
    rng = np.random.default_rng(0)
    clip = np.random.default_rng(1).integers(0, 256, (4, 32, 16, 3)).astype(np.uint8)
    flipped = augment_clip(clip, np.random.default_rng(3), flip_prob=1.0, erasing_prob=0.0)
    np.testing.assert_array_equal(flipped, clip[:, :, ::-1])
    erased = augment_clip(clip, rng, flip_prob=0.0, erasing_prob=1.0)
    changed = np.any(erased != clip, axis=-1)
    assert changed.any() and all(np.array_equal(changed[0], changed[t]) for t in range(4))
    params = [augment_params(np.random.default_rng(k), 32, 16, 0.5, 0.5) for k in range(6)]
    clips = np.stack([clip] * 6)
    on_device = apply_augmentation(
        clips, np.array([p[0] for p in params]), np.stack([p[1] for p in params])
    )
    for k in range(6):
        want = augment_clip(clip, np.random.default_rng(k), 0.5, 0.5)
        np.testing.assert_array_equal(np.asarray(on_device[k]), want)
    box = random_erasing_box(256, 128, np.random.default_rng(2))
    _, _, h, w = box
    assert 0.02 * 256 * 128 * 0.8 <= h * w <= 0.4 * 256 * 128 * 1.2


@pytest.mark.parametrize("batch_size, hosts", [(3, 1), (4, 2), (5, 3)])
def test_eval_stream_visits_every_frame_once(data, batch_size, hosts):
    for split in ("query", "gallery"):
        index = data.splits[split]
        counts = {t: np.zeros(int(c), int) for t, c in enumerate(index.count)}
        lengths = set()
        for host in range(hosts):
            lengths.add(len(EvalBatches(data, split, 4, batch_size, host, hosts)))
            for batch in eval_dataset(data, split, 4, batch_size, host, hosts, debug=True):
                assert batch["clips"].shape == (batch_size, 4, 16, 8, 3)
                for row in range(batch_size):
                    t = int(batch["tracklet"][row])
                    if t < 0:  # a padding clip
                        assert not batch["frame_mask"][row].any()
                        continue
                    for j in range(4):
                        f = int(batch["frame_index"][row, j])
                        np.testing.assert_array_equal(
                            batch["clips"][row, j], data.frame(index.first[t] + f)
                        )
                        counts[t][f] += int(batch["frame_mask"][row, j])
        assert len(lengths) == 1  # every host runs the same number of batches
        assert all(np.all(c == 1) for c in counts.values()), split


def tclnet_last_clip(frames, test_frames):
    """TCLNet `evaluation.py` `extract`: a short last clip padded with its own frames."""
    clip = list(frames)
    total = list(clip)
    while len(total) < test_frames:
        for idx in range(len(clip)):
            if len(total) >= test_frames:
                break
            total.append(clip[idx])
    return total


def test_dense_clips_padding():
    idx, mask = dense_clips(6, 4, "loop")
    np.testing.assert_array_equal(idx, [[0, 1, 2, 3], [4, 5, 0, 1]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0]])
    idx, mask = dense_clips(6, 4)  # "repeat", the default
    np.testing.assert_array_equal(idx, [[0, 1, 2, 3], [4, 5, 4, 5]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0]])
    for padding in ("loop", "repeat"):
        idx, mask = dense_clips(1, 4, padding)
        np.testing.assert_array_equal(idx, [[0, 0, 0, 0]])
        assert mask.sum() == 1
    for n in range(1, 30):
        for t in (1, 3, 4, 8):
            idx, mask = dense_clips(n, t)
            starts = range(0, n, t)
            want = [tclnet_last_clip(range(s, min(s + t, n)), t) for s in starts]
            np.testing.assert_array_equal(idx, want)
            assert mask.sum() == n
    with pytest.raises(ValueError, match="test padding"):
        dense_clips(6, 4, "wrap")


def ap3d_epoch_length(pids, k):
    """AP3D `RandomIdentitySampler.length`, as its loop computes it."""
    length = 0
    for pid in dict.fromkeys(pids):
        num = int(np.sum(pids == pid))
        if num < k:
            num = k
        length += num - num % k
    return length


def check_epoch(sampler, pids, p, k, epoch):
    """One epoch of `sampler` against AP3D's rule: P chunks of K same-id tracklets per
    batch; an id with at least K tracklets shows each at most once; all chunks but the
    dropped last partial batch are used."""
    steps = sampler.steps_per_epoch
    batches = [sampler.batch(epoch * steps + i) for i in range(steps)]
    seen = {}
    for batch in batches:
        assert batch.shape == (p * k,)
        for chunk in batch.reshape(p, k):
            assert len(set(pids[chunk])) == 1
            seen.setdefault(int(pids[chunk[0]]), []).extend(chunk.tolist())
    usable = 0
    for pid in np.unique(pids):
        n = int(np.sum(pids == pid))
        visits = seen.get(int(pid), [])
        if n >= k:
            assert len(visits) == len(set(visits)), pid  # no tracklet twice in an epoch
        usable += max(n, k) - max(n, k) % k
    dropped_chunks = usable // k - steps * p
    assert 0 <= dropped_chunks < p
    assert sum(len(v) for v in seen.values()) == steps * p * k
    return seen


def test_tracklet_sampler_follows_ap3d_on_a_mars_layout(tmp_path):
    """On MARS's native layout, steps per epoch = floor(AP3D length / (P·K)) and every
    tracklet of an id with >= K tracklets is visited at most once per epoch, all of them
    but the K-remainder and the dropped last batch; epochs differ; batches are a pure
    function of (seed, step)."""
    fixtures.write_mars(str(tmp_path / "mars"))
    pids = np.array([t.pid for t in load_dataset("mars", str(tmp_path / "mars")).train])
    p, k = 1, 2  # the fixture has 7 training tracklets of 3 ids
    sampler = TrackletChunkSampler(pids, p, k, seed=3)
    assert sampler.steps_per_epoch == ap3d_epoch_length(pids, k) // (p * k) == 3
    first = check_epoch(sampler, pids, p, k, epoch=0)
    second = check_epoch(sampler, pids, p, k, epoch=1)
    assert first != second
    again = TrackletChunkSampler(pids, p, k, seed=3)
    for step in (5, 0, sampler.steps_per_epoch + 1):  # any order: no hidden state
        np.testing.assert_array_equal(again.batch(step), sampler.batch(step))


def test_tracklet_sampler_pads_small_ids_and_counts_like_ap3d():
    pids = np.array([0] * 7 + [1] * 2 + [2] * 4 + [3] * 1 + [4] * 9)
    for p, k in ((2, 4), (3, 2), (1, 3)):
        sampler = TrackletChunkSampler(pids, p, k, seed=0)
        assert sampler.steps_per_epoch == ap3d_epoch_length(pids, k) // (p * k)
        for epoch in range(3):
            seen = check_epoch(sampler, pids, p, k, epoch)
            if p * sampler.steps_per_epoch * k == ap3d_epoch_length(pids, k):
                assert set(seen) == set(range(5))  # nothing dropped: every id appears
    with pytest.raises(ValueError, match="fewer than one batch"):
        TrackletChunkSampler(pids, ids_per_batch=50, clips_per_id=4, seed=0)


def test_rrs_test_clip_is_the_lineage_restricted_begin_crop():
    """The first frame of each of T chunks of floor(n/T) frames; a short tracklet padded
    with its last frame first (TemporalRestrictedBeginCrop, written out as a loop)."""
    for n in (1, 3, 4, 7, 8, 9, 31, 100):
        frames = list(range(n))
        while len(frames) < 4:
            frames.append(frames[-1])
        block = len(frames) // 4
        expected = sorted(frames[i * block] for i in range(4))
        np.testing.assert_array_equal(rrs_test_indices(n, 4), expected, err_msg=str(n))


def test_rrs_eval_stream_has_one_clip_per_tracklet(data):
    index = data.splits["gallery"]
    seen = []
    for batch in eval_dataset(data, "gallery", 4, 3, sampler="rrs", debug=True):
        for row in np.flatnonzero(batch["tracklet"] >= 0):
            t = int(batch["tracklet"][row])
            seen.append(t)
            np.testing.assert_array_equal(
                batch["frame_index"][row], rrs_test_indices(int(index.count[t]), 4)
            )
            assert batch["frame_mask"][row].all()
    assert seen == list(range(len(index)))
    with pytest.raises(ValueError, match="Unknown test sampler 'middle'"):
        eval_dataset(data, "gallery", 4, 3, sampler="middle")


def test_batches_equal_the_previous_definition(data):
    """Decoding into the batch buffer and augmenting on the device change nothing: each
    batch, augmented by `apply_augmentation` as the train step does, equals the reference
    built frame by frame with PIL and the host-side `augment_clip`."""
    spec = TrainSpec(**{**SPEC.__dict__, "flip_prob": 0.5, "erasing_prob": 0.7})
    flips = erased = 0
    for step in range(8):
        batch = train_dataset(data, spec, num_steps=8)[step]
        clips, labels = reference_batch(data, spec, step)
        augmented = apply_augmentation(batch["clips"], batch["flip"], batch["erase"])
        np.testing.assert_array_equal(np.asarray(augmented), clips)
        np.testing.assert_array_equal(batch["labels"], labels)
        flips += batch["flip"].sum()
        erased += (batch["erase"][:, 2] > 0).sum()
    assert 0 < flips < 48 and 0 < erased < 48  # both branches taken


def test_worker_processes_give_the_same_stream(data):
    """grain worker processes (spawned, shared-memory batches) and threads give the inline
    batches, in order, for training and evaluation."""
    inline = list(train_dataset(data, SPEC, start_step=2, num_steps=4, debug=True))
    it = iter(
        iterate(train_dataset(data, SPEC, start_step=2, num_steps=4, debug=True), 2, "processes")
    )
    for a, b in zip(inline, it, strict=True):
        assert a["step"] == b["step"]
        np.testing.assert_array_equal(a["clips"], b["clips"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    evals = list(eval_dataset(data, "gallery", 4, 3))
    for a, b in zip(
        evals, iterate(eval_dataset(data, "gallery", 4, 3), 2, "processes"), strict=True
    ):
        np.testing.assert_array_equal(a["clips"], b["clips"])
        np.testing.assert_array_equal(a["tracklet"], b["tracklet"])
    assert worker_kind("auto", cpus=2) == "threads" and worker_kind("auto", cpus=64) == "processes"
    with pytest.raises(ValueError, match="Unknown worker kind 'fork'"):
        worker_kind("fork")
