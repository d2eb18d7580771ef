"""Where the experiment config is read during one run: every module that reads a key of it,
how many reads each makes, and how often the reads move from one module to another.

    python tools/config_walk.py                 # configs/synthetic.py:smoke, 2 steps + eval
    python tools/config_walk.py --config configs/strf_mars.py:smoke --data_dir DIR

It runs `train.py`'s `main` in this process with every read of a `ConfigDict` recorded
(the module of the code that asked), then prints a table, one module per row, in the
order they first read the config, and a last JSON line. The config package itself
(`reidjax.config`: schema, checks, loading) and ml_collections are counted apart: they
are where the config is made, not where it travels. The figure for the layout is in
docs/architecture.md.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import json
import os
import sys
import tempfile

import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the config is made and checked, not where it travels: the config files, the
# config package (and the same modules where an older layout kept them loose), absl and
# ml_collections.
MAKERS = (
    "configs.", "reidjax.config", "reidjax.recipes", "reidjax.run_config", "ml_collections",
    "absl",
)  # fmt: skip


def module_of(frame) -> str:
    """The reading module's name; a config file under configs/ as `configs.<name>`."""
    path = frame.f_code.co_filename
    if os.path.dirname(os.path.abspath(path)) == os.path.join(ROOT, "configs"):
        return "configs." + os.path.splitext(os.path.basename(path))[0]
    return frame.f_globals.get("__name__", "?")


def record(reads: list[str]) -> None:
    """Every key read of every ConfigDict appends the reading module to `reads`: the first
    frame outside ml_collections and outside these wrappers."""
    get_attr = ml_collections.ConfigDict.__getattr__
    get_item = ml_collections.ConfigDict.__getitem__
    depth = [0]  # a read inside a read (attribute access goes through item access) is one

    def counted(get, self, key):
        if depth[0] == 0 and not str(key).startswith("_"):
            reads.append(caller())
        depth[0] += 1
        try:
            return get(self, key)
        finally:
            depth[0] -= 1

    def getattr_(self, name):
        return counted(get_attr, self, name)

    def getitem_(self, key):
        return counted(get_item, self, key)

    own = {getattr_.__code__, getitem_.__code__, counted.__code__}

    def caller() -> str:
        frame = sys._getframe(3)
        while frame is not None and (
            frame.f_code in own or frame.f_globals.get("__name__", "").startswith("ml_collections")
        ):
            frame = frame.f_back
        return module_of(frame) if frame is not None else "?"

    ml_collections.ConfigDict.__getattr__ = getattr_
    ml_collections.ConfigDict.__getitem__ = getitem_


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/synthetic.py:smoke")
    parser.add_argument("--data_dir", default="", help="default: a new temporary folder")
    args = parser.parse_args()
    reads: list[str] = []
    with tempfile.TemporaryDirectory(prefix="reidjax-walk-") as scratch:
        os.chdir(ROOT)
        # train.py at the repository root, loaded from its file (it is not in a package).
        spec = importlib.util.spec_from_file_location("train", os.path.join(ROOT, "train.py"))
        train = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(train)
        argv = [
            "train.py", "--config", args.config, "--workdir", os.path.join(scratch, "run"),
            f"--config.dataset.data_dir={args.data_dir or os.path.join(scratch, 'data')}",
        ]  # fmt: skip
        remaining = train.cli.parse_flags(argv)
        record(reads)
        code = train.main(remaining)
    if code:
        return code
    travel = [m for m in reads if not m.startswith(MAKERS)]
    per_module = collections.Counter(travel)
    moves = sum(1 for a, b in itertools.pairwise(travel) if a != b)
    order = list(dict.fromkeys(travel))
    print(f"{'module':<40} reads")
    for module in order:
        print(f"{module:<40} {per_module[module]:>5}")
    made = len(reads) - len(travel)
    print(
        f"{len(order)} modules read the config outside its own package, {len(travel)} reads, "
        f"{moves} moves between modules ({made} reads where it is made and checked)"
    )
    print(json.dumps({"modules": len(order), "reads": len(travel), "moves": moves,
                      "per_module": dict(per_module), "config": args.config}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
