"""The evaluation report: `results.json`, the printed table and the pictures."""

from __future__ import annotations

import io
import json
import os

import jax
import numpy as np

from input_pipeline.records import ReIDDataset
from reidjax.evaluation import visualize
from reidjax.evaluation.evaluator import EvalResult
from reidjax.runtime import workdir_io

TABLE_COLUMNS = ("R1", "R5", "R10", "R20", "mAP", "mINP")


def results_json(result: EvalResult, step: int | None, extra: dict | None = None) -> dict:
    """The numbers of `results.json`: R1/5/10/20, mAP, mINP (percent), counts, step."""
    m = result.metrics
    out = {k: round(100 * v, 2) for k, v in result.table_row().items()}
    out.update(
        cmc=[round(100 * float(v), 2) for v in m["cmc"]],
        num_queries=m["num_queries"],
        num_valid_queries=m["num_valid_queries"],
        num_gallery=len(result.gallery),
        step=step,
    )
    if "thresholds" in m:  # same-person distance thresholds (reidjax.evaluation.thresholds)
        out["thresholds"] = m["thresholds"]
    out.update(extra or {})
    return out


def format_table(rows: dict[str, dict]) -> str:
    """A fixed-width table of `name -> results_json(...)` rows."""
    width = max(8, *(len(n) for n in rows))
    lines = [f"{'':{width}s} " + " ".join(f"{c:>6s}" for c in TABLE_COLUMNS)]
    for name, r in rows.items():
        cells = (f"{r[c]:6.2f}" if c in r else f"{'-':>6s}" for c in TABLE_COLUMNS)
        lines.append(f"{name:{width}s} " + " ".join(cells))
    return "\n".join(lines)


def write_json(path: str, numbers: dict) -> None:
    """Writes `numbers` to `path` whole (a reader never sees half a file; any workdir)."""
    workdir_io.write_text(path, json.dumps(numbers, indent=1))


def write_report(
    result: EvalResult,
    out_dir: str,
    data: ReIDDataset,
    *,
    step: int | None,
    title: str,
    attention: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
    extra: dict | None = None,
) -> dict:
    """Writes `results.json`, `cmc.png`, `retrieval.png` (when the distance matrix was
    kept) and `attention.png` (when `attention` = (clips, {label: maps}) is given) into
    `out_dir`, on process 0 only; returns the numbers."""
    numbers = results_json(result, step, extra)
    if jax.process_index() != 0:
        return numbers
    write_json(os.path.join(out_dir, "results.json"), numbers)
    visualize.plot_cmc({title: result.metrics["cmc"]}, os.path.join(out_dir, "cmc.png"))
    if result.distances is not None:
        ranking = visualize.Ranking(result.query, result.gallery, result.distances)
        visualize.retrieval_grid(
            ranking, data, os.path.join(out_dir, "retrieval.png"), camera_names=data.camera_names
        )
    if attention is not None and attention[1]:
        visualize.attention_figure(*attention, os.path.join(out_dir, "attention.png"))
    return numbers


def save_features(result: EvalResult, path: str) -> None:
    """The query and gallery features, as `.npz` (process 0), with what traces each row
    back to the data: `<split>_index` (the tracklet's row in the split), `_pids`, `_camids`
    (0-based), `_first_frame` (its first frame's index in the prepared dataset),
    `_num_frames` and `_source` (its first frame's path in the dataset as distributed)."""
    if jax.process_index() != 0:
        return
    arrays = {}
    for split in ("query", "gallery"):
        index = getattr(result, split)
        arrays.update(
            {
                f"{split}_features": getattr(result, f"{split}_features"),
                f"{split}_index": np.arange(len(index)),
                f"{split}_pids": index.pid,
                f"{split}_camids": index.camid,
                f"{split}_first_frame": index.first,
                f"{split}_num_frames": index.count,
                f"{split}_source": np.asarray(index.source or [""] * len(index), dtype=str),
            }
        )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    workdir_io.write_bytes(path, buffer.getvalue())
