"""What every command shares (reidjax.cli): the compilation cache. train.py and eval.py
themselves run in tests/test_train.py (end to end) and tests/test_config_errors.py."""

import os


def test_compilation_cache_folder_from_the_environment(monkeypatch, tmp_path):
    """Every command turns on JAX's persistent compilation cache: $REIDJAX_COMPILATION_CACHE
    (default ~/.cache/reidjax/xla), `off` for none; JAX's own variable wins when set."""
    import jax

    from reidjax import cli

    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
        monkeypatch.setenv("REIDJAX_COMPILATION_CACHE", str(tmp_path / "xla"))
        assert cli.compilation_cache() == str(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
        monkeypatch.setenv("REIDJAX_COMPILATION_CACHE", "off")
        assert cli.compilation_cache() is None
        monkeypatch.delenv("REIDJAX_COMPILATION_CACHE")
        assert cli.compilation_cache() == os.path.expanduser("~/.cache/reidjax/xla")
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
        assert cli.compilation_cache() == str(tmp_path / "jax")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_console_commands_name_the_command_functions():
    """Every `[project.scripts]` entry of pyproject.toml names a module and a `run` that
    exists: `pip install -e .` makes `reidjax-data`, `reidjax-search`, `reidjax-tracks`,
    `reidjax-export` and `reidjax-release` (each also `python -m MODULE`)."""
    import ast
    import importlib.util
    import pathlib
    import tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {
        "reidjax-data", "reidjax-search", "reidjax-tracks", "reidjax-export", "reidjax-release"
    }  # fmt: skip
    for name, target in scripts.items():  # read, not imported: each defines its own flags
        module, function = target.split(":")
        source = pathlib.Path(importlib.util.find_spec(module).origin).read_text()
        defined = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
        assert function in defined, (name, target)
