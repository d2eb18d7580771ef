"""Parameter counting and per-module breakdowns of Flax variable trees."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


def count_params(tree: Any) -> int:
    """Number of scalars in a tree of arrays or `ShapeDtypeStruct`s."""
    return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree.leaves(tree)))


def breakdown(params: Mapping, depth: int = 2) -> list[tuple[str, int]]:
    """Parameter counts per module path, `depth` levels deep (`backbone/layer2_0`).

    Returns:
        (path, count) rows in the tree's order; leaves shallower than `depth` are
        reported at their own module.
    """
    rows: dict[str, int] = {}

    def visit(node, path):
        if isinstance(node, Mapping):
            for key, child in node.items():
                visit(child, (*path, key))
            return
        module = "/".join(path[:depth] if len(path) > depth else path[:-1]) or path[0]
        rows[module] = rows.get(module, 0) + int(np.prod(node.shape, dtype=np.int64))

    visit(params, ())
    return list(rows.items())
