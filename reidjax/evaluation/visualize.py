"""Pictures of an evaluation: CMC curve, retrieval grid, DSANet attention maps.

Figures are built with matplotlib's object API (`Figure`, no pyplot), so no display or
GUI backend is involved and nothing is left open.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from input_pipeline.records import FrameSource, TrackletIndex
from reidjax.runtime import workdir_io

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(**kwargs) -> Figure:
    """A new figure; matplotlib is imported on the first picture, not with the module
    (training imports this module and draws only when it evaluates)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


CORRECT, WRONG, QUERY = (0.13, 0.7, 0.2), (0.85, 0.1, 0.1), (0.2, 0.35, 0.9)
UNKNOWN = (0.55, 0.55, 0.55)  # identities not given


def save(fig: Figure, path: str) -> None:
    """Writes the figure as PNG to `path` (a local path or a bucket: `workdir_io`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    workdir_io.write_bytes(path, buffer.getvalue())


def plot_cmc(curves: dict[str, np.ndarray], path: str, title: str = "CMC") -> None:
    """CMC curves (`name -> cmc[max_rank]`, fractions) as a line plot."""
    fig = _figure(figsize=(5, 3.6), dpi=120)
    ax = fig.subplots()
    for name, cmc in curves.items():
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, 100 * np.asarray(cmc), marker="o", markersize=3, label=name)
    ax.set(xlabel="rank", ylabel="matching rate (%)", title=title, ylim=(0, 101))
    ax.set_xticks([1, 5, 10, 15, 20][: len(ranks)] if len(ranks) >= 5 else ranks)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save(fig, path)


@dataclasses.dataclass(frozen=True)
class Ranking:
    """What a retrieval grid shows: the query and gallery tracklets (where their frames
    are, their identities and cameras) and the distances `[Q, G]` between them."""

    query: TrackletIndex
    gallery: TrackletIndex
    distances: np.ndarray


def thumbnail(data: FrameSource, index: TrackletIndex, i: int) -> np.ndarray:
    """The middle frame of tracklet `i` of `index`."""
    return data.frame(int(index.first[i]) + int(index.count[i]) // 2)


def choose_queries(result: Ranking, count: int, identities: bool = True) -> np.ndarray:
    """`count` queries with a valid match (any, without `identities`), evenly spread over
    the query list."""
    q, g = result.query, result.gallery
    if not identities:
        return np.linspace(0, len(q) - 1, min(count, len(q))).round().astype(int)
    good = (q.pid[:, None] == g.pid[None, :]) & (q.camid[:, None] != g.camid[None, :])
    valid = np.flatnonzero(good.any(axis=1))
    pick = np.linspace(0, len(valid) - 1, min(count, len(valid))).round().astype(int)
    return valid[pick]


def ranked_gallery(result: Ranking, qi: int, top: int, identities: bool = True) -> np.ndarray:
    """The top gallery items of query `qi`, junk (same pid and camera) removed."""
    q, g = result.query, result.gallery
    order = np.argsort(result.distances[qi], kind="stable")
    if not identities:
        return order[:top]
    junk = (g.pid[order] == q.pid[qi]) & (g.camid[order] == q.camid[qi])
    return order[~junk][:top]


def retrieval_grid(
    result: Ranking,
    data: FrameSource,
    path: str,
    num_queries: int = 8,
    top: int = 10,
    names: dict | None = None,
    camera_names: Sequence[str] = (),
) -> None:
    """Query thumbnails (blue) and their top-`top` gallery tracklets, green when the
    identity is right and red when wrong, as in the papers' retrieval figures. Each tile
    says its rank, distance to the query, identity and camera (as the dataset names it)."""
    identities = names is None  # names: {"query": [...], "gallery": [...]}, ids unknown
    queries = choose_queries(result, num_queries, identities)
    h, w = thumbnail(data, result.query, queries[0]).shape[:2]
    ranked = {qi: ranked_gallery(result, qi, top, identities) for qi in queries}
    top = max(len(r) for r in ranked.values())  # small galleries: what is left after junk

    def camera(c: int) -> str:
        return camera_names[c] if c < len(camera_names) else f"cam {c}"

    cell, head, row_text = 1.0, 0.45, 0.5  # inches: tile width, heading, tile titles
    height = (cell * h / w + row_text) * len(queries) + head
    fig = _figure(figsize=(cell * (top + 1) + 0.2, height), dpi=110)
    axes = fig.subplots(len(queries), top + 1, squeeze=False)
    q, g = result.query, result.gallery
    for row, qi in enumerate(queries):
        label = f"pid {q.pid[qi]}, {camera(q.camid[qi])}" if identities else names["query"][qi]
        panels = [(thumbnail(data, q, qi), QUERY, f"query\n{label}")]
        for rank, gi in enumerate(ranked[qi], 1):
            if identities:
                color = CORRECT if g.pid[gi] == q.pid[qi] else WRONG
                label = f"pid {g.pid[gi]}, {camera(g.camid[gi])}"
            else:
                color, label = UNKNOWN, names["gallery"][gi]
            text = f"{rank}: d {result.distances[qi, gi]:.3g}\n{label}"
            panels.append((thumbnail(data, g, gi), color, text))
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(panels):
                ax.axis("off")
                continue
            image, color, text = panels[col]
            ax.imshow(image)
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(4)
            ax.set_title(text, fontsize=6.5)
    # The heading sits in its own band above the first row's tile titles, whatever the
    # number of rows (a fraction of the height would collide with them on a small grid).
    legend = "green = same identity, red = different" if identities else "identities not given"
    fig.text(
        0.5, 1 - 0.12 / height, f"query (blue) and top-{top} gallery, by distance d: {legend}",
        ha="center", va="top", fontsize=9,
    )  # fmt: skip
    fig.subplots_adjust(
        left=0.01, right=0.99, top=1 - (head + row_text) / height, bottom=0.01,
        wspace=0.08, hspace=row_text / (cell * h / w),
    )  # fmt: skip
    save(fig, path)


def attention_figure(clips: np.ndarray, maps: dict[str, np.ndarray], path: str) -> None:
    """Frames and activation maps (paper Fig. 6): one row per clip; column groups are the
    T frames, then each map (`name -> [B, T, h, w]`, min-max scaled per frame) overlaid on
    the frames.

    Args:
        clips: uint8 `[B, T, H, W, 3]`.
    """
    b, t, h, w = clips.shape[:4]
    groups = ["frames", *maps]
    cell = 0.9
    fig = _figure(figsize=(cell * t * len(groups) + 0.6, (cell * h / w + 0.3) * b + 0.3), dpi=110)
    axes = fig.subplots(b, t * len(groups), squeeze=False)
    for i in range(b):
        for g, name in enumerate(groups):
            for j in range(t):
                ax = axes[i, g * t + j]
                ax.imshow(clips[i, j])
                if name != "frames":
                    m = maps[name][i, j].astype(np.float32)
                    m = (m - m.min()) / max(float(m.max() - m.min()), 1e-12)
                    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
                    ax.imshow(m, cmap="jet", alpha=0.5, extent=extent, interpolation="bilinear")
                if i == 0:
                    ax.set_title(f"{name} t{j}" if j == 0 else f"t{j}", fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
        axes[i, 0].set_ylabel(f"query {i}", fontsize=7)
    width = fig.get_figwidth()  # the colour bar takes the last 0.9 inch
    fig.subplots_adjust(
        left=0.02, right=1 - 0.9 / width, top=0.93, bottom=0.02, wspace=0.05, hspace=0.1
    )
    if maps:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = fig.add_axes((1 - 0.75 / width, 0.1, 0.12 / width, 0.8))
        fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), cax=bar)
        bar.set_ylabel("activation, scaled per frame", fontsize=7)
        bar.tick_params(labelsize=6)
    save(fig, path)
