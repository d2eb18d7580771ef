"""Comparing the structure of two parameter trees (names and shapes)."""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import traverse_util


def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """`{"a/b/kernel": shape}` of a nested dict of arrays (or shape-bearing leaves)."""
    flat = traverse_util.flatten_dict(tree, sep="/")
    return {k: tuple(np.shape(v)) for k, v in flat.items()}


def shape_differences(have: Any, want: Any, have_name: str = "saved") -> list[str]:
    """The differences between `have` and `want` (nested dicts of arrays), one line each:
    `missing NAME SHAPE`, `unexpected NAME SHAPE` and `NAME: saved SHAPE, model SHAPE`.
    Empty when both have the same names and shapes."""
    got, expected = shapes(have), shapes(want)
    problems = [f"missing {k} {expected[k]}" for k in sorted(expected.keys() - got.keys())]
    problems += [f"unexpected {k} {got[k]}" for k in sorted(got.keys() - expected.keys())]
    problems += [
        f"{k}: {have_name} {got[k]}, model {expected[k]}"
        for k in sorted(expected.keys() & got.keys())
        if got[k] != expected[k]
    ]
    return problems


def summarize(problems: list[str], limit: int = 6) -> str:
    """The first `limit` differences joined by '; ', with a count of the rest."""
    shown = "; ".join(problems[:limit])
    return shown + (f"; ... {len(problems) - limit} more" if len(problems) > limit else "")
