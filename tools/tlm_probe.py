"""Where DSANet's TLM puts its attention, and whether the image content or the position
decides it.

    python tools/tlm_probe.py --workdir runs/demo [--clips 64]

For the first clip of `--clips` query tracklets of the run's dataset, prints the TLM map's
mass per feature-map row (mean over clips, frames and columns; a uniform map gives 1/h per
row) for four inputs:

- `clips`: the test clips as they are;
- `flipped`: the same clips upside down: a map that follows the content moves with it,
  a map tied to positions stays where it was;
- `constant F_ID`: the trained TLM on a feature map that is the same at every position (its
  channel means over the clips): whatever it still prefers comes from the 7×7 conv's zero
  padding at the borders, not from any content;
- `F_ID activation`: the channel mean of F_ID per row (where the trunk's features are
  strong), for comparison.

The last line is JSON with the four profiles.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from reidjax import cli
from reidjax.data_setup import open_dataset
from reidjax.errors import ConfigError
from reidjax.evaluation.eval_lib import attention_inputs
from reidjax.models.dsanet import TLM
from reidjax.models.factory import normalize
from reidjax.models.resnet3d import ResNet3D
from reidjax.serving.inference import Embedder

_WORKDIR = flags.DEFINE_string("workdir", None, "A DSANet training run's workdir.")
_CLIPS = flags.DEFINE_integer("clips", 64, "Query tracklets probed (their first clip).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest | best | a step.")
flags.mark_flag_as_required("workdir")


def profile(maps: np.ndarray) -> np.ndarray:
    """Share of each frame's map per row `[h]`, averaged over maps `[B, T, h, w]`."""
    rows = maps.sum(axis=3)  # [B, T, h]
    rows = rows / rows.sum(axis=2, keepdims=True)
    return rows.mean(axis=(0, 1))


def main(argv):
    del argv

    def run() -> int:
        embedder = Embedder.from_workdir(_WORKDIR.value, _CHECKPOINT.value)
        config, model, variables = embedder.config, embedder.model, embedder.variables
        if "TLM" not in model.maps.values():
            raise ConfigError(f"{_WORKDIR.value} is a {config.model.name} run: no TLM to probe")
        variables = jax.device_get(variables)
        clips = attention_inputs(open_dataset(config), config.input.num_frames, _CLIPS.value)
        apply = jax.jit(lambda v, c: model.module.apply(v, normalize(c), train=False))
        out = apply(variables, clips)
        flipped = apply(variables, clips[:, :, ::-1].copy())
        # The trained TLM on a constant map: every position the clips' mean feature F_ID.
        m = model.module
        trunk = ResNet3D(arch=m.arch, variant="c2d", last_stride=m.last_stride)
        trunk_vars = {k: variables[k]["backbone"] for k in ("params", "batch_stats")}
        f_id = jax.jit(lambda v, c: trunk.apply(v, normalize(c))["layer4"])(trunk_vars, clips)
        channel_means = jnp.mean(f_id.astype(jnp.float32), axis=(0, 1, 2, 3))
        constant = jnp.broadcast_to(channel_means, (1, 1, *f_id.shape[2:]))
        const_map = TLM().apply({"params": variables["params"]["tlm"]}, constant)
        results = {
            "clips": profile(np.asarray(out["tlm_attention"])),
            "flipped": profile(np.asarray(flipped["tlm_attention"]))[::-1],
            "constant F_ID": profile(np.asarray(const_map)),
            "F_ID activation": profile(np.asarray(out["fid_activation"])),
        }
        h = len(results["clips"])
        print(f"TLM mass per feature-map row (top row first; uniform = {1 / h:.3f}), "
              f"{len(clips)} query clips of {_WORKDIR.value}:")  # fmt: skip
        for name, rows in results.items():
            note = (
                " (rows flipped back: content-driven maps match `clips`)"
                if name == "flipped"
                else ""
            )
            print(f"  {name:>16}: " + " ".join(f"{r:.3f}" for r in rows) + note)
        print(json.dumps({k: [round(float(r), 4) for r in v] for k, v in results.items()}))
        return 0

    return cli.run_or_explain(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=cli.parse_flags))
