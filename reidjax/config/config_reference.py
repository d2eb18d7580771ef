"""The config reference page, generated from the schema (`config_lib.base_config`).

    python -m reidjax.config.config_reference > docs/config.md

Every key with its default, the comment that documents it in `base_config`'s source
(the comment lines above the assignment and the one at its end) and what the config checks
accept for it (`config_checks.CHOICES`, `RANGES`, `POSITIVE`). `tests/test_config_and_tools.py`
checks that docs/config.md is what this prints, so the page cannot drift from the code.
The keys most often changed are listed by train.py --help (`COMMON_KEYS`).
"""

from __future__ import annotations

import inspect
import re
import sys

from reidjax.config import config_lib

# What train.py / eval.py --help show: the keys a user changes most.
COMMON_KEYS = (
    "dataset.name",
    "dataset.data_dir",
    "dataset.split",
    "init.imagenet",
    "train.epochs",
    "train.num_steps",
    "train.eval_every",
    "optim.lr",
    "input.workers",
    "mesh.data",
    "model.dtype",
)
_ASSIGN = re.compile(r"^\s*config\.([\w.]+)\s*=\s*(.+?)\s*(?:#\s*(.*))?$")
_SECTION = re.compile(r"ml_collections\.ConfigDict\(\)")


def comments() -> dict[str, str]:
    """Key -> its comment in `base_config`'s source."""
    out, pending = {}, []
    for line in inspect.getsource(config_lib.base_config).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = _ASSIGN.match(line)
        if match and not _SECTION.search(match.group(2)):
            text = " ".join([*pending, match.group(3) or ""]).strip()
            out[match.group(1)] = text
        if stripped:
            pending = []
    return out


def attribute_docs(cls, prefix: str) -> dict[str, str]:
    """`prefix.field` -> the field's entry in the `Attributes:` section of `cls`'s docstring."""
    out, key = {}, None
    doc = inspect.cleandoc(cls.__doc__ or "")
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            key = prefix + match.group(1)
            out[key] = match.group(2).strip()
        elif key and line.startswith("        "):
            out[key] += " " + line.strip()
    return out


def flat_defaults() -> dict[str, object]:
    """Key -> default of every leaf of the schema."""
    out = {}

    def walk(node, prefix):
        for key in node:
            value = node[key]
            if hasattr(value, "items") and not isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = value

    walk(config_lib.base_config(), "")
    return out


def declared(key: str) -> str:
    """What the config checks accept for `key`: its choices, or its range."""
    from reidjax.config import config_checks

    if key in config_checks.CHOICES:
        return "Choices: " + ", ".join(f"`{c}`" for c in config_checks.CHOICES[key]) + "."
    if key in config_checks.RANGES:
        low, high = config_checks.RANGES[key][:2]
        return f"Range: {low} to {high}." if high is not None else f"At least {low}."
    if key in config_checks.POSITIVE:
        return "Above 0."
    return ""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def render() -> str:
    """The whole page (Markdown)."""
    from reidjax.models.dsanet import DSANetConfig
    from reidjax.models.strf import STRFConfig

    notes = {
        **attribute_docs(STRFConfig, "model.strf."),
        **attribute_docs(DSANetConfig, "model.dsanet."),
        **comments(),
    }
    lines = [
        "# Config reference",
        "",
        "Every config key, its default in the schema (`reidjax/config/config_lib.py`, "
        "`base_config`) and what it does.",
        "The recipes in `configs/` change some of these; "
        "`python train.py --config CONFIG --print_config` prints a config as it will run.",
        "Override any key on the command line: `--config.<key>=<value>` (train.py, eval.py, "
        "tools/; eval.py without `--config` applies them to the run's own config.json). "
        "Each value is parsed as the key's type by ml_collections' `config_flags`, as in "
        "the Flax examples: `5`, `0.1`, a string as it is, `true`/`false` (or a bare "
        "`--config.<key>` / `--noconfig.<key>`), a tuple as `'((), (1, 3))'` or as the "
        "flag repeated once per item, and `none` for None on a key that is not a string. "
        "The whole config is checked when it "
        "is loaded (`reidjax/config/config_checks.py`): a misspelt key (with the closest keys), a "
        "name that is not one of a key's choices, a number out of its range, switches "
        "that do not go together, a batch the devices cannot split or a workdir that is a "
        "file each stop the command with one `error:` line, before any data is read.",
        "Generated by `python -m reidjax.config.config_reference > docs/config.md`; "
        "a test checks it is current.",
    ]
    section = None
    for key, value in flat_defaults().items():
        head = key.split(".")[0] if "." in key else "(top level)"
        if head != section:
            section = head
            lines += ["", f"## {section}", "", "| key | default | meaning |", "|---|---|---|"]
        meaning = " ".join(filter(None, [notes.get(key, ""), declared(key)]))
        lines.append(f"| `{key}` | `{_cell(repr(value))}` | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def help_text() -> str:
    """The common keys with their defaults, for --help."""
    defaults = flat_defaults()
    rows = [f"  --config.{k}={defaults[k]!r}" for k in COMMON_KEYS]
    return (
        "Commonly changed config keys (schema defaults; the config file may set others):\n"
        + "\n".join(rows)
        + "\nAll keys: docs/config.md. --print_config prints the config as it will run."
    )


if __name__ == "__main__":
    sys.stdout.write(render())
