"""The built-in synthetic dataset: determinism, protocol structure, its builder."""

import numpy as np

from input_pipeline.build import build_dataset
from input_pipeline.builders import encode_array
from input_pipeline.synthetic import render_tracklet


def test_deterministic_and_protocol(tmp_path):
    config = "ids8_cams3_seed3_64x32"
    da = build_dataset("synthetic", config, str(tmp_path / "a"), workers=2, quiet=True)
    db = build_dataset("synthetic", config, str(tmp_path / "b"), workers=1, quiet=True)
    assert da.num_frames == db.num_frames
    for r in range(da.num_frames):  # worker count changes nothing
        assert da.encoded(r) == db.encoded(r)
    assert da.frame(0).shape == (64, 32, 3)
    train, query, gallery = (da.splits[s] for s in ("train", "query", "gallery"))
    assert sorted(set(train.pid)) == list(range(4))  # relabelled 0..N-1
    assert set(query.pid) == set(gallery.pid) == {4, 5, 6, 7}
    for pid, cam in zip(query.pid, query.camid, strict=True):  # a match in another camera
        assert np.any((gallery.pid == pid) & (gallery.camid != cam))
    first = train.first[1]  # the second tracklet's frames are its rendering
    want = render_tracklet(3, *map(int, _ids(train.source[1])), int(train.count[1]), (64, 32))
    for f in range(int(train.count[1])):  # stored: the JPEG encoding of the rendering
        assert da.encoded(first + f) == encode_array(want[f], (64, 32))
    dc = build_dataset(
        "synthetic", "ids8_cams3_seed4_64x32", str(tmp_path / "a"), workers=1, quiet=True
    )
    assert dc.num_frames != da.num_frames or dc.encoded(0) != da.encoded(0)


def _ids(name):
    pid, cam, index, _ = name.split("_")
    return int(pid), int(cam[1:]), int(index[1:])


def test_identity_is_consistent_and_cameras_differ():
    """The same person in two cameras shares clothing colours; backgrounds differ."""
    cam0 = render_tracklet(0, pid=7, cam=0, index=0, length=4, size=(128, 64)).astype(float)
    cam1 = render_tracklet(0, pid=7, cam=1, index=0, length=4, size=(128, 64)).astype(float)
    other = render_tracklet(0, pid=8, cam=0, index=0, length=4, size=(128, 64)).astype(float)
    assert cam0.shape == (4, 128, 64, 3)
    assert not np.array_equal(cam0[0], cam0[1])  # the person moves
    # Background corners: camera-specific.
    assert np.abs(cam0[:, :8, :4].mean((0, 1, 2)) - cam1[:, :8, :4].mean((0, 1, 2))).max() > 5
    # Torso region: identity-specific (other person differs more than the other camera).
    torso = (slice(None), slice(40, 60), slice(26, 38))
    same = np.abs(
        cam0[torso].mean((0, 1, 2)) / cam0.mean() - cam1[torso].mean((0, 1, 2)) / cam1.mean()
    )
    diff = np.abs(
        cam0[torso].mean((0, 1, 2)) / cam0.mean() - other[torso].mean((0, 1, 2)) / other.mean()
    )
    assert diff.sum() > same.sum()
