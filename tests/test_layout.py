"""The code's layout rules: no import cycle in the library, modules under ~400 lines, no
model-family switches outside `reidjax/models/`, no test fixtures in shipped packages."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("reidjax", "input_pipeline")
MAX_LINES = 420  # "~400": room for a docstring, not for a second module


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield name.removesuffix(".__init__"), path


def imports(path, known):
    """First-party modules imported by `path` (module level and function level)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in known}
    return found


def test_no_import_cycle():
    graph = dict(modules())
    edges = {name: imports(path, graph) - {name} for name, path in graph.items()}
    # a package's __init__ re-exporting its submodules is not a cycle through them
    for name in edges:
        edges[name] = {d for d in edges[name] if not name.startswith(d + ".")}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*stack, node, dep]))
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])


def test_modules_are_small():
    long = {
        name: n for name, path in modules() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_model_families_are_switched_only_in_models():
    for name, path in modules():
        if name.startswith("reidjax.models"):
            continue
        text = path.read_text()
        for family in ('"dsanet"', '"strf"', '"baseline"'):
            assert f"== {family}" not in text and f"!= {family}" not in text, (name, family)


def test_models_do_not_read_datasets():
    for name, path in modules():
        if name.startswith("reidjax.models"):
            assert not any(
                d.startswith("input_pipeline") for d in imports(path, dict(modules()))
            ), name
