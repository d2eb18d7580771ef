"""A built-in synthetic video re-ID dataset: procedural people walking past cameras.

Each identity has its own clothing colours and texture (plain, stripes or checks), body
proportions, hair, an optional bag and a gait phase; each camera its own background,
lighting and occluders (a pole or a low box); each tracklet walks with a gait-like leg and
arm swing and bounding-box jitter (misalignment): the nuisances STRF and DSANet target.
The first half of the identities train (every camera they appear in); for each test
identity one tracklet is a query and its tracklets from other cameras are the gallery.
Everything is a pure function of the seed. It is stored like every other dataset, through
its tensorflow-datasets builder (`input_pipeline.builders.reid_synthetic`):

    python -m input_pipeline build --dataset synthetic --size 128x64 --data_dir DIR

and training on `dataset.name = "synthetic"` builds it on first use.
"""

from __future__ import annotations

import numpy as np

from input_pipeline.datasets.tracklets import Splits, Tracklet, relabel

PALETTE = np.array(
    [[200, 30, 30], [30, 60, 190], [240, 220, 40], [30, 150, 60], [240, 240, 240],
     [30, 30, 30], [130, 70, 160], [240, 130, 30], [100, 180, 220], [150, 100, 60],
     [220, 120, 170], [110, 110, 110]], np.float32,
)  # fmt: skip


def identity_params(seed: int, pid: int) -> dict:
    rng = np.random.default_rng([seed, 1, pid])
    top, bottom, pattern_colour = rng.choice(len(PALETTE), 3, replace=False)
    return {
        "top": PALETTE[top] + rng.normal(0, 12, 3),
        "bottom": PALETTE[bottom] + rng.normal(0, 12, 3),
        "pattern_colour": PALETTE[pattern_colour],
        "pattern": rng.choice(["plain", "stripes", "checks"]),
        "frequency": rng.uniform(4, 9),
        "skin": np.array([225, 180, 150]) * rng.uniform(0.55, 1.05),
        "hair": PALETTE[rng.choice([5, 9, 2, 11])] * rng.uniform(0.6, 1.0),
        "height": rng.uniform(0.78, 0.95),
        "width": rng.uniform(0.8, 1.2),
        "head": rng.uniform(0.85, 1.15),
        "bag": PALETTE[rng.integers(len(PALETTE))] if rng.random() < 0.4 else None,
        "gait": rng.uniform(0.18, 0.32),  # cycles per frame
    }


def camera_params(seed: int, cam: int) -> dict:
    rng = np.random.default_rng([seed, 2, cam])
    return {
        "sky": rng.uniform(60, 230, 3),
        "wall": rng.uniform(40, 200, 3),
        "floor": rng.uniform(30, 160, 3),
        "horizon": rng.uniform(0.55, 0.8),
        "bands": rng.uniform(3, 12),
        "gain": rng.uniform(0.7, 1.25),
        "tint": rng.normal(0, 15, 3),
        "occluder": rng.choice(["none", "pole", "box"], p=[0.4, 0.3, 0.3]),
        "occluder_colour": rng.uniform(20, 230, 3),
    }


def render_tracklet(seed: int, pid: int, cam: int, index: int, length: int, size) -> np.ndarray:
    """Frames uint8 `[L, H, W, 3]` of identity `pid` seen by camera `cam`."""
    h, w = size
    person, camera = identity_params(seed, pid), camera_params(seed, cam)
    rng = np.random.default_rng([seed, 3, pid, cam, index])
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    yn, xn = y / h, x / w
    # Background: camera-specific wall with bands above the horizon, floor below.
    bands = 0.5 + 0.5 * np.sin(2 * np.pi * camera["bands"] * yn)[..., None]
    wall = camera["wall"] * (0.8 + 0.2 * bands) + camera["sky"] * 0.2 * (1 - bands)
    background = np.where((yn > camera["horizon"])[..., None], camera["floor"], wall)
    background = background + rng.normal(0, 4, (h, w, 3))
    phase0 = rng.uniform(0, 2 * np.pi)
    offset = rng.normal(0, 0.05, 2)  # tracklet-level misalignment
    occluder_x = rng.uniform(0.1, 0.9)
    frames = []
    for f in range(length):
        jitter = offset + rng.normal(0, 0.02, 2)
        scale = person["height"] * (1 + rng.normal(0, 0.02))
        cx = 0.5 + jitter[0]
        phase = phase0 + 2 * np.pi * person["gait"] * f
        bob = 0.01 * np.cos(2 * phase)
        top = 0.04 + jitter[1] + bob
        ph = scale  # person height, as a fraction of the frame
        half_w = 0.16 * ph * person["width"] * h / w  # torso half-width in x units
        img = background.copy()

        # Legs: hip to foot, swinging with the gait phase.
        hip, foot = top + 0.5 * ph, top + ph
        t = np.clip((yn - hip) / (foot - hip), 0, 1)
        swing = 0.12 * np.sin(phase) * h / w * ph
        for side in (-1, 1):
            centre = cx + side * 0.45 * half_w + side * swing * t
            leg = (yn >= hip) & (yn <= foot) & (np.abs(xn - centre) < 0.38 * half_w)
            _paint(img, leg, person["bottom"] * (0.9 if side < 0 else 1.0))
        # Torso with the identity's texture.
        shoulder = top + 0.16 * ph
        torso = (yn >= shoulder) & (yn < hip) & (np.abs(xn - cx) < half_w)
        colour = np.broadcast_to(person["top"], (h, w, 3)).copy()
        if person["pattern"] == "stripes":
            on = np.sin(2 * np.pi * person["frequency"] * (yn - shoulder) / ph * 3) > 0
            colour[on] = person["pattern_colour"]
        elif person["pattern"] == "checks":
            on = (np.sin(2 * np.pi * person["frequency"] * yn) > 0) ^ (
                np.sin(2 * np.pi * person["frequency"] * xn * w / h) > 0
            )
            colour[on] = person["pattern_colour"]
        img[torso] = colour[torso]
        # Arms swing against the legs.
        arm_t = np.clip((yn - shoulder) / (0.36 * ph), 0, 1)
        for side in (-1, 1):
            centre = cx + side * (half_w + 0.12 * half_w) - side * swing * 0.6 * arm_t
            arm = (
                (yn >= shoulder)
                & (yn <= shoulder + 0.36 * ph)
                & (np.abs(xn - centre) < 0.2 * half_w)
            )
            _paint(img, arm, person["top"] * 0.85)
        if person["bag"] is not None:
            bag = (np.abs(yn - (hip - 0.02)) < 0.07 * ph) & (
                np.abs(xn - (cx + 1.15 * half_w)) < 0.35 * half_w
            )
            _paint(img, bag, person["bag"])
        # Head and hair.
        head_r = 0.075 * ph * person["head"]
        head_y = top + 0.08 * ph
        head = ((yn - head_y) / head_r) ** 2 + ((xn - cx) * w / h / head_r) ** 2 < 1
        _paint(img, head, person["skin"])
        _paint(img, head & (yn < head_y - 0.3 * head_r), person["hair"])
        # Camera occluders.
        if camera["occluder"] == "pole":
            _paint(img, np.abs(xn - occluder_x) < 0.06, camera["occluder_colour"])
        elif camera["occluder"] == "box":
            _paint(img, (yn > 0.78) & (np.abs(xn - occluder_x) < 0.3), camera["occluder_colour"])
        img = img * camera["gain"] + camera["tint"] + rng.normal(0, 3, (h, w, 3))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _paint(img: np.ndarray, mask: np.ndarray, colour) -> None:
    img[mask] = colour


def layout(num_ids: int, num_cameras: int, seed: int) -> list[tuple[str, int, int, int, int]]:
    """(split, pid, cam, tracklet index, length) of every tracklet."""
    rng = np.random.default_rng([seed, 4])
    out = []
    for pid in range(num_ids):
        cams = np.sort(rng.choice(num_cameras, min(num_cameras, rng.integers(2, 4)), replace=False))
        lengths = rng.integers(8, 25, len(cams))
        if pid < num_ids // 2:
            out += [
                ("train", pid, int(c), i, int(n))
                for i, (c, n) in enumerate(zip(cams, lengths, strict=True))
            ]
        else:
            out.append(("query", pid, int(cams[0]), 0, int(lengths[0])))
            out += [
                ("gallery", pid, int(c), i, int(n))
                for i, (c, n) in enumerate(zip(cams[1:], lengths[1:], strict=True), 1)
            ]
    return out


def frame_name(pid: int, cam: int, index: int, frame: int) -> str:
    """The name a synthetic frame is known by (the tracklet table's `source`)."""
    return f"{pid:04d}_c{cam}_t{index}_{frame:03d}.jpg"


def splits(num_ids: int = 200, num_cameras: int = 4, seed: int = 0) -> Splits:
    """The tracklets (frames named by `frame_name`; train relabelled), without rendering."""
    if num_ids < 4 or num_cameras < 2:
        raise ValueError("the synthetic dataset needs at least 4 identities and 2 cameras")
    out = {"train": [], "query": [], "gallery": []}
    for split, pid, cam, index, length in layout(num_ids, num_cameras, seed):
        names = tuple(frame_name(pid, cam, index, f) for f in range(length))
        out[split].append(Tracklet(names, pid, cam))
    out["train"] = relabel(out["train"])
    return Splits(f"synthetic ({num_ids} ids, {num_cameras} cameras, seed {seed})", **out)
