"""What every command shares: the `--config` flag and its `--config.KEY=VALUE` overrides,
the workdir default and the error contract.

Every entry point (train.py, eval.py, `python -m reidjax.serving.search`, tools/, bench/) runs
`app.run(main, flags_parser=cli.parse_flags)`: the overrides are taken out of the command
line before absl parses the rest, and `cli.config()` applies them to the config file, or,
without `--config`, to the run's own `WORKDIR/config.json`. Loading checks every value
(`config_checks`), so a mistake is one `error:` line before anything is read or compiled.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
import traceback
from collections.abc import Callable

import ml_collections
from absl import app, flags, logging

from reidjax.config import config_lib, run_config
from reidjax.errors import USER_ERRORS, ConfigError
from reidjax.training import hosts

RUNS_DIR = "runs"
_OVERRIDES: list[str] = []


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flags parser with `--config.KEY=VALUE` (or `--config.KEY VALUE`, or a bare
    `--config.KEY` / `--noconfig.KEY` for a boolean) taken out first; `config()` applies
    them with ml_collections' `config_flags` (`config_lib.apply_overrides`), to the config
    file or to a run's own config.json, which is only known once `--workdir` is read. A flag absl
    does not know (or cannot parse) is one `error:` line and exit status 1. Logging is
    then quiet (`quiet_logging`) unless `--verbosity` was given."""
    asked = {"--help", "-h", "-?", "--helpshort", "--helpfull"} & set(argv[1:])
    if asked:  # absl's own --help exits 1; asking for help is not an error
        flags.FLAGS.mark_as_parsed()
        app.usage(shorthelp="--helpfull" not in asked, writeto_stdout=True, exitcode=0)
    rest, overrides = split_overrides(argv)
    _OVERRIDES[:] = overrides
    try:
        remaining = flags.FLAGS(rest)
    except flags.Error as e:  # an unknown or malformed flag: one line, as every UserError
        print(f"error: {e} (see {os.path.basename(argv[0])} --help)", file=sys.stderr)
        sys.exit(1)
    compilation_cache()
    local_platforms()
    quiet_logging()  # every command: its own lines, not orbax's and JAX's INFO records
    return remaining


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """The command line without its config overrides, and the overrides as `config.KEY=VALUE`
    (`config.KEY` for a bare boolean; `--noconfig.KEY` as `config.KEY=false`; a value after
    a space joined to its key)."""
    rest, overrides, i = [argv[0]], [], 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            item = arg[2:]
            if "=" not in item and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                item, i = f"{item}={argv[i + 1]}", i + 1
            overrides.append(item)
        elif arg.startswith("--noconfig.") and "=" not in arg:  # absl's false boolean
            overrides.append(f"{arg[4:]}=false")
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def console(main: Callable[[list[str]], int]) -> None:
    """Runs a command's `main` as its console script and `python -m` do: absl's app with
    `parse_flags`, the process's exit status from `main`."""
    sys.exit(app.run(main, flags_parser=parse_flags))


def local_platforms() -> None:
    """On a machine with no TPU chip and no GPU, JAX is told to use its CPU backend only.

    Left to itself JAX tries every backend it finds installed, and libtpu is installed with
    the test requirements (for the TPU compile of tools/aot_compile.py, which loads it
    itself): on a CPU-only machine that try prints 3-4 lines of TPU errors before any
    command's own output. A choice made with `JAX_PLATFORMS` (or `jax_platforms`) is kept,
    as is JAX's own search wherever an accelerator is visible."""
    import jax

    if os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms:
        return
    try:
        from jax._src import hardware_utils as hw  # the PCI scan JAX makes itself
    except ImportError:  # moved in another JAX version: JAX's own search, as before
        return
    if (
        hw.num_available_tpu_chips_and_device_id()[0] == 0
        and not hw.has_visible_nvidia_gpu()
        and hw.num_available_amd_gpus(stop_at=1) == 0
    ):
        jax.config.update("jax_platforms", "cpu")


CACHE_ENV = "REIDJAX_COMPILATION_CACHE"
DEFAULT_CACHE = os.path.join("~", ".cache", "reidjax", "xla")


def compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache for this process: compiled steps are
    kept on disk and the next start of any command with the same shapes loads them instead
    of compiling (docs/benchmarks.md says by how much). Where: `$REIDJAX_COMPILATION_CACHE`,
    default ~/.cache/reidjax/xla; `off` turns it off; JAX's own `JAX_COMPILATION_CACHE_DIR`
    wins when set. Returns the folder, or None."""
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    where = os.environ.get(CACHE_ENV, DEFAULT_CACHE)
    if where.strip().lower() in ("off", "0", "none", ""):
        return None
    where = os.path.expanduser(where)
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return where


def overrides() -> list[str]:
    """The `config.KEY=VALUE` overrides of the command line, in order."""
    return list(_OVERRIDES)


def define_config_flags(what: str):
    """`--config` (with the common keys in its help) and `--print_config`; `what` says
    what the config file is. Returns both flag holders."""
    from reidjax.config import config_reference

    config = flags.DEFINE_string(
        "config",
        None,
        f"{what}, e.g. configs/synthetic.py or configs/dsanet_lsvid.py:smoke; override any "
        "key with --config.KEY=VALUE.\n" + config_reference.help_text(),
    )
    print_config = flags.DEFINE_bool(
        "print_config", False, "Print the config as it will run and exit."
    )
    return config, print_config


def config(workdir: str | None = None) -> ml_collections.ConfigDict:
    """The config of the command line: `--config` with the overrides, or the run's own
    `WORKDIR/config.json` with them when `--config` is not given.

    Raises:
        ConfigError: neither is given, or the config does not load or check.
    """
    path = flags.FLAGS["config"].value
    if path:
        return config_lib.load_config(path, overrides=overrides())
    if workdir:
        return run_config.load_run_config(workdir, overrides())
    raise ConfigError("give --config CONFIG_FILE (e.g. configs/synthetic.py) or --workdir RUN")


def workdir_or_default(workdir: str | None) -> str:
    """`--workdir`, or `runs/<config name>[_<variant>]` for the `--config` given (for
    `configs/dsanet_lsvid.py:smoke`: `runs/dsanet_lsvid_smoke`).

    Raises:
        ConfigError: neither `--workdir` nor `--config`.
    """
    if workdir:
        return workdir
    path = flags.FLAGS["config"].value
    if not path:
        raise ConfigError("give --workdir DIR or --config CONFIG_FILE")
    return os.path.join(RUNS_DIR, config_name(path))


def config_path() -> str:
    """The `--config` argument as given (path and `:variant`)."""
    return flags.FLAGS["config"].value or ""


class _OrbaxErrorsOnOneLine(std_logging.Filter):
    """Orbax logs a failed background write once per thread involved, each with its full
    traceback (a full disk: over 300 lines before reidjax's own one-line report): each such
    record keeps its first line only."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.levelno >= std_logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname:
            first = record.getMessage().strip().splitlines()
            record.msg, record.args = (first[0][:400] if first else ""), ()
            record.exc_info = record.exc_text = None
        return True


def quiet_logging() -> None:
    """WARNING level unless `--verbosity` was given: orbax/JAX INFO lines hide progress.
    Orbax's error records are cut to one line each (`_OrbaxErrorsOnOneLine`)."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    one_line = _OrbaxErrorsOnOneLine()
    for handler in {logging.get_absl_handler(), *std_logging.getLogger().handlers}:
        handler.addFilter(one_line)


def run_or_explain(fn: Callable[[], int]) -> int:
    """Runs `fn`; a `UserError` becomes one line on stderr and exit code 1. Any other
    exception keeps its traceback (it is a bug), except, with several processes, a
    collective that failed because another process went away (one line).

    With several processes an error ends this process at once and tells the others
    (`hosts.abort`): JAX's orderly shutdown would wait for processes still training.
    """
    try:
        return fn()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        hosts.abort(1)
        return 1
    except Exception as e:
        if not hosts.several_processes():
            raise
        if hosts.peer_gone(e):
            print(
                f"error: a collective failed on process {hosts.process_index()}: another "
                f"process went away ({hosts.first_line(e)}); rerun the same command on every "
                "host to resume from the last checkpoint",
                file=sys.stderr,
                flush=True,
            )
        else:
            traceback.print_exc()
        hosts.abort(1)
        raise


def config_name(path: str) -> str:
    """`configs/dsanet_lsvid.py:smoke,ablation=tlm` -> `dsanet_lsvid_smoke_ablation-tlm`:
    the run's default folder name under `runs/`."""
    path, _, arg = path.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    if arg:
        items = [item.strip().replace("=", "-") for item in arg.split(",") if item.strip()]
        name = "_".join([name, *items])
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in name)
