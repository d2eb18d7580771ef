"""The config a training run was trained with, read back from its workdir."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import ml_collections

from reidjax.config import config_checks
from reidjax.config.config_lib import apply_overrides, base_config
from reidjax.errors import ConfigError
from reidjax.runtime import workdir_io
from reidjax.runtime.workdir import Workdir

# Values older versions wrote, as this version spells them: `model.remat` was a bool.
LEGACY = {"model.remat": {False: "none", True: "blocks"}}


def load_run_config(workdir: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The config a run was trained with: `WORKDIR/config.json` (what train.py wrote, with
    the sizes the data decided filled in), checked against the current schema, then the
    `overrides` (as `load_config`), then every value checked.

    Raises:
        ConfigError: no config.json in `workdir`, a file that is not a config, a key this
            version does not know, or a value that cannot work.
    """
    path = Workdir(workdir).config
    if not workdir_io.exists(path):
        raise ConfigError(
            f"no {os.path.basename(path)} in {workdir}: not a training directory (train.py "
            "writes one)"
        )
    try:
        saved = json.loads(workdir_io.read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); restore it or use --config") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} holds no config (a JSON object): restore it or use --config")

    def tuples(value):
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    config = base_config()
    unknown = []

    def merge(target: ml_collections.ConfigDict, values: dict, prefix: str) -> None:
        for key, value in values.items():
            if key not in target:
                unknown.append(prefix + key)
            elif isinstance(target[key], ml_collections.ConfigDict):
                if not isinstance(value, dict):
                    raise ConfigError(f"{path}: {prefix}{key}={value!r} must be a section")
                merge(target[key], value, f"{prefix}{key}.")
            else:
                if isinstance(value, bool) and value in LEGACY.get(prefix + key, {}):
                    value = LEGACY[prefix + key][value]
                try:
                    target[key] = value
                except TypeError:
                    expected, got = type(target[key]).__name__, type(value).__name__
                    raise ConfigError(
                        f"{path}: {prefix}{key}={value!r} must be of type {expected}, not {got}"
                    ) from None

    with config.unlocked():
        merge(config, tuples(saved), "")
    if unknown:
        raise ConfigError(f"{path} has keys this version does not know: {', '.join(unknown)}")
    config.lock()
    apply_overrides(config, overrides)
    try:
        return config_checks.validate(config)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
