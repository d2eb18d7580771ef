"""Prints a model's parameter count, per-module breakdown and FLOPs per clip.

    python tools/model_summary.py --config configs/p3dc_mars.py
    python tools/model_summary.py --config configs/strf_mars.py:backbone=i3d --depth 3

Parameters are counted on `jax.eval_shape` of the init (nothing is allocated); BN running
statistics are not parameters. FLOPs come from XLA's cost analysis of the compiled
inference forward pass on one clip of the config's input shape. The last line is
`params: <int>`.
"""

import sys

import jax
from absl import app, flags

from reidjax import cli
from reidjax.experiment import build_module
from reidjax.models.factory import dummy_clips
from reidjax.models.summary import breakdown, count_params

_CONFIG, _PRINT = cli.define_config_flags("Experiment config file")
flags.adopt_module_key_flags(cli)
_DEPTH = flags.DEFINE_integer("depth", 2, "Module depth of the breakdown (1 = top level).")
_FLOPS = flags.DEFINE_bool("flops", True, "Compile the forward pass and report its FLOPs.")


def forward_flops(model, variables, clips) -> float:
    """FLOPs of the compiled inference forward pass (XLA cost analysis)."""
    fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
    cost = fn.lower(variables, clips).compile().cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def main(argv):
    del argv
    return cli.run_or_explain(summarize)


def summarize() -> int:
    config = cli.config()
    model = build_module(config)
    clips = dummy_clips(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), clips))
    params = shapes["params"]
    i = config.input
    print(
        f"model: {config.model.name} ({config.model.arch}, {config.model.variant}), "
        f"dataset: {config.dataset.name}, {model.num_classes} classes, "
        f"clip {i.num_frames}x{i.height}x{i.width}, dtype {config.model.dtype}"
    )
    rows = breakdown(params, _DEPTH.value)
    width = max(len(name) for name, _ in rows)
    for name, n in rows:
        print(f"  {name:<{width}}  {n:>12,}")
    total = count_params(params)
    print(f"  {'total':<{width}}  {total:>12,}  ({total / 1e6:.2f}M)")
    if _FLOPS.value:
        flops = forward_flops(model, shapes, clips)
        print(
            f"flops per clip (inference forward, XLA): {flops / 1e9:.4g} GFLOPs "
            f"({flops / 1e9 / i.num_frames:.4g} per frame)"
        )
    print(f"params: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
