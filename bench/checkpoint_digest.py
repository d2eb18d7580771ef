"""What the checkpoint digests cost: a full-size train state saved, restored and verified.

    python bench/checkpoint_digest.py                    # configs/dsanet_lsvid.py's state
    python bench/checkpoint_digest.py --config strf_mars
    python bench/checkpoint_digest.py --tiny             # the smoke config: seconds (tests)

The state (parameters, BN statistics, Adam moments) of the config's model at full size,
random values. Timed, each the median of `--repeats`: the digests (`reidjax.training.integrity.of`:
one pass over the state's bytes on the device and a few hundred integers to the host), the
orbax save that they guard (started and finished, to a local temporary folder) and the
restore; and, as the physical bound of one pass over those bytes, a NumPy copy of them on
the host. The last line is JSON.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from common import header

from reidjax import experiment
from reidjax.config.config_lib import load_config
from reidjax.data_setup import registry_meta
from reidjax.runtime import sharding
from reidjax.training import checkpoint, integrity
from reidjax.training.optim import build_optimizer
from reidjax.training.state import create_state, init_variables


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="dsanet_lsvid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the smoke config")
    args = parser.parse_args(argv)
    config = load_config(args.config, "smoke" if args.tiny else None)
    with config.unlocked():
        config.mesh.data = 1
        config.init.imagenet = "none"
    tx, _ = build_optimizer(experiment.optim_spec(config), 100, config.train.epochs)
    model = experiment.build(config, registry_meta(config))
    state = create_state(init_variables(model, config), tx, sharding.make_mesh(config))
    leaves = jax.tree.leaves(state)
    nbytes = sum(x.nbytes for x in leaves)
    host = [np.asarray(x) for x in leaves]

    integrity.of(state)  # compiled once, outside the timing
    digest_s = median_time(lambda: integrity.of(state), args.repeats)
    copy_s = median_time(lambda: [np.copy(x) for x in host], args.repeats)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    with tempfile.TemporaryDirectory() as folder:
        ckpt = checkpoint.Checkpointer(os.path.join(folder, "checkpoints"), keep=args.repeats + 1)
        steps = iter(range(1, 10**6))

        def save():
            ckpt.save(next(steps), state, force=True)
            ckpt.wait()

        save()  # the first save creates the folders and compiles orbax's programs
        save_s = median_time(save, args.repeats)  # digests included (written first)
        step = ckpt.latest_step()
        plain = ocp.args.StandardRestore(abstract)  # orbax alone, as before the digests
        restore_s = median_time(lambda: ckpt.manager.restore(step, args=plain), args.repeats)
        restored = ckpt.manager.restore(step, args=plain)
        verify_s = median_time(
            lambda: integrity.verify(ckpt.directory, step, restored), args.repeats
        )
        ckpt.close()
    result = header("checkpoint_digest", config=args.config, tiny=args.tiny)
    result.update(
        state_mib=nbytes / 2**20,
        arrays=len(leaves),
        digest_s=digest_s,
        digest_gib_per_s=nbytes / 2**30 / digest_s,
        host_copy_s=copy_s,
        host_copy_gib_per_s=nbytes / 2**30 / copy_s,
        save_with_digest_s=save_s,
        digest_share_of_save=digest_s / save_s,
        restore_s=restore_s,
        verify_s=verify_s,
        verify_share_of_restore=verify_s / restore_s,
    )
    print(
        f"{args.config}: state {nbytes / 2**20:,.0f} MiB in {len(leaves)} arrays; digests "
        f"{digest_s:.3f} s ({result['digest_gib_per_s']:.2f} GiB/s; a host copy of the same "
        f"bytes {copy_s:.3f} s); save incl. digests {save_s:.2f} s (digests "
        f"{100 * digest_s / save_s:.1f}%); restore {restore_s:.2f} s, its verification "
        f"{verify_s:.2f} s ({100 * verify_s / restore_s:.1f}%)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
