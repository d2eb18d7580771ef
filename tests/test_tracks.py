"""The tracks command's parts: MOT input, filtering, crops, the constrained clustering
against a brute-force reference, and the pairwise scores by hand."""

import numpy as np
import pytest
from PIL import Image

from reidjax.serving import association, tracks
from reidjax.serving.inference import InputError


def test_read_mot_skips_ignored_rows_and_names_bad_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("2,7,10,20,30,60,0.9,-1,-1,-1\n1,7,11,21,30,60,1\n3,7,1,1,5,5,0\n1,3,0,0,4,8\n")
    got = tracks.read_mot(str(path), "cam")
    assert [t.track_id for t in got] == [3, 7]
    assert got[1].frames.tolist() == [1, 2]  # sorted by frame; conf 0 (ignore) dropped
    np.testing.assert_array_equal(got[1].boxes[0], [11, 21, 30, 60])
    path.write_text("1,7,10,20,30,60\n1,x,2\n")
    with pytest.raises(InputError, match=r"t.txt:2: expected 'frame,id,x,y,w,h"):
        tracks.read_mot(str(path), "cam")


def test_frame_folder_and_camera_spec_errors(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"0")
    with pytest.raises(InputError, match="is a file: give a folder of its frames"):
        tracks.frame_paths(str(video))
    with pytest.raises(InputError, match="holds no numbered frames"):
        tracks.frame_paths(str(tmp_path))
    assert tracks.parse_camera("a=/x/img1,/x/gt.txt") == ("a", "/x/img1", "/x/gt.txt")
    with pytest.raises(InputError, match="expected NAME=SOURCE,TRACKS"):
        tracks.parse_camera("/x/img1,/x/gt.txt")


def test_select_drops_small_boxes_then_short_tracks():
    t = tracks.Track("c", 1, np.arange(10), np.tile([0.0, 0, 10, 40], (10, 1)), [["r"]] * 10)
    t.boxes[:3, 3] = 20  # three boxes too low
    kept, dropped = tracks.select([t], min_frames=8, min_height=32)
    assert kept == [] and "7 boxes of at least 32 px (< 8)" in dropped["c/1"]
    kept, _ = tracks.select([t], min_frames=7, min_height=32)
    assert kept[0].frames.tolist() == list(range(3, 10)) and len(kept[0].rows) == 7
    assert tracks.sample(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert tracks.sample(100, 4).tolist() == [0, 33, 66, 99]


def test_crops_are_clipped_to_the_frame(tmp_path):
    frame = np.arange(20 * 30 * 3, dtype=np.uint32).reshape(20, 30, 3).astype(np.uint8)
    Image.fromarray(frame).save(tmp_path / "000001.png")
    boxes = np.array([[25.0, -5, 10, 12], [40, 40, 5, 5]])
    t = tracks.Track("c", 1, np.array([1, 1]), boxes)
    (crops,) = tracks.crop_tracks([t], tracks.frame_paths(str(tmp_path)), 8, progress=None)
    np.testing.assert_array_equal(crops[0], frame[0:7, 25:30])  # clipped at the edges
    np.testing.assert_array_equal(crops[1], frame[19:20, 29:30])  # outside: nearest pixel


def _reference(d, cannot, threshold):
    """Average linkage from scratch: mean distance over every cross pair of the current
    groups, a merge allowed only without a cannot-link pair inside the union."""
    groups = [[i] for i in range(len(d))]
    while True:
        best = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if any(cannot[i, j] for i in groups[a] for j in groups[b]):
                    continue
                mean = np.mean([d[i, j] for i in groups[a] for j in groups[b]])
                if mean <= threshold and (best is None or mean < best[0]):
                    best = (mean, a, b)
        if best is None:
            break
        _, a, b = best
        groups[a] += groups.pop(b)
    labels = np.empty(len(d), int)
    for k, g in enumerate(sorted(groups, key=min)):
        labels[g] = k
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_clustering_equals_a_brute_force_average_linkage(seed):
    rng = np.random.default_rng(seed)
    n = 14
    points = rng.normal(size=(n, 3)) + rng.integers(0, 4, n)[:, None] * 3
    d = np.linalg.norm(points[:, None] - points[None], axis=2)
    cannot = np.zeros((n, n), bool)
    for i, j in rng.integers(0, n, (6, 2)):
        if i != j:
            cannot[i, j] = cannot[j, i] = True
    threshold = float(np.median(d))
    got = association.cluster(d, cannot, threshold)
    np.testing.assert_array_equal(got, _reference(d, cannot, threshold))
    for i, j in zip(*np.nonzero(cannot), strict=True):
        assert got[i] != got[j]


def test_overlapping_tracks_of_one_camera_conflict():
    def track(camera, first, last):
        return tracks.Track(camera, 0, np.array([first, last]), np.zeros((2, 4)))

    ts = [track("a", 1, 10), track("a", 10, 20), track("a", 21, 30), track("b", 1, 30)]
    c = association.conflicts(ts)
    assert c[0, 1] and not c[0, 2] and not c[1, 2] and not c[0, 3] and not c[2, 3]


def test_pair_scores_by_hand():
    # truth {0,1,2} {3,4}; predicted {0,1} {2,3,4}: 4 true pairs (01 02 12 34), predicted
    # 01 23 24 34, of which 01 and 34 are right.
    s = association.pair_scores([0, 0, 1, 1, 1], [5, 5, 5, 8, 8])
    assert (s["precision"], s["recall"]) == (0.5, 0.5)
    s = association.pair_scores([0, 1, 2, 3], [0, 0, -1, 1])  # unknown truth left out
    assert s["precision"] == 1.0 and s["recall"] == 0.0


def test_importing_the_commands_together_defines_no_flag_twice():
    """reidjax.serving.tracks defines its flags only when run, so library users (and tests) can
    import it beside reidjax.serving.search, whose command shares flag names with it."""
    import reidjax.serving.search
    import reidjax.serving.tracks  # noqa: F401
