"""The built-in synthetic dataset: determinism, protocol structure, ingested format."""

import numpy as np

from input_pipeline.records import ReIDDataset
from input_pipeline.synthetic import generate, render_tracklet


def test_deterministic_and_protocol(tmp_path):
    a = generate(str(tmp_path / "a"), num_ids=8, num_cameras=3, seed=3, size=(64, 32), workers=2)
    b = generate(str(tmp_path / "b"), num_ids=8, num_cameras=3, seed=3, size=(64, 32), workers=1)
    assert a["splits"] == b["splits"] and a["records"] == b["records"]
    da, db = ReIDDataset(str(tmp_path / "a")), ReIDDataset(str(tmp_path / "b"))
    for r in (0, a["records"] // 2, a["records"] - 1):
        np.testing.assert_array_equal(da.frame(r), db.frame(r))
    assert da.frame(0).shape == (64, 32, 3)
    train, query, gallery = (da.splits[s] for s in ("train", "query", "gallery"))
    assert sorted(set(train.pid)) == list(range(4))  # relabelled 0..N-1
    assert set(query.pid) == set(gallery.pid) == {4, 5, 6, 7}
    for pid, cam in zip(query.pid, query.camid, strict=True):  # a match in another camera
        assert np.any((gallery.pid == pid) & (gallery.camid != cam))
    c = generate(str(tmp_path / "c"), num_ids=8, num_cameras=3, seed=4, size=(64, 32), workers=1)
    assert c["records"] != a["records"] or not np.array_equal(
        ReIDDataset(str(tmp_path / "c")).frame(0), da.frame(0)
    )


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
