"""What `train.py` and `eval.py` share: the workdir default and the error contract."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from absl import flags, logging
from ml_collections import config_flags

from reidjax.config_lib import config_name
from reidjax.errors import UserError

RUNS_DIR = "runs"


def define_config_flags(what: str):
    """`--config` (with the common keys in its help) and `--print_config`, as train.py and
    eval.py share them; `what` says what the config file is. Returns both flag holders."""
    from reidjax import config_reference

    config = config_flags.DEFINE_config_file(
        "config",
        None,
        f"{what}; override any key with --config.KEY=VALUE.\n" + config_reference.help_text(),
    )
    print_config = flags.DEFINE_bool(
        "print_config", False, "Print the config as it will run and exit."
    )
    return config, print_config


def workdir_or_default(workdir: str | None, config_flag: str = "config") -> str:
    """`--workdir`, or `runs/<config name>[_<variant>]` for the `--config` given (for
    `configs/dsanet_lsvid.py:smoke`: `runs/dsanet_lsvid_smoke`)."""
    if workdir:
        return workdir
    path = config_flags.get_config_filename(flags.FLAGS[config_flag])
    return os.path.join(RUNS_DIR, config_name(path))


def config_path(config_flag: str = "config") -> str:
    """The `--config` argument as given (path and `:variant`)."""
    return config_flags.get_config_filename(flags.FLAGS[config_flag])


def quiet_logging() -> None:
    """WARNING level unless `--verbosity` was given: orbax/JAX INFO lines hide progress."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def run_or_explain(fn: Callable[[], int]) -> int:
    """Runs `fn`; a `UserError` becomes one line on stderr and exit code 1. Any other
    exception keeps its traceback (it is a bug)."""
    try:
        return fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
