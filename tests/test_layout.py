"""The code's layout rules: the input pipeline is the bottom layer (it imports nothing of
reidjax), the models import no training, evaluation or serving, every room is on the map
(docs/architecture.md), no import cycle in the library (a submodule import runs its parent
packages' `__init__` first, so those count as imports too), no model-family switches
outside `reidjax/models/`, models never read data, and training imports neither PyTorch
nor matplotlib. Module length is a guideline (about 400 lines), not a rule."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("input_pipeline", "reidjax")


def modules(root=ROOT):
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            yield name.removesuffix(".__init__"), path


def parents(name, known):
    """The packages whose `__init__` importing `name` runs first (`a`, `a.b` for `a.b.c`)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))} & set(known)


def imports(path, known):
    """First-party modules imported by `path` (module level and function level), with the
    parent packages each import runs first."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            if n in known:
                found |= {n} | parents(n, known)
    return found


def find_cycle(root=ROOT):
    """An import cycle of the library under `root` as a list of modules, or None.

    A package's `__init__` importing its own submodules is not a cycle through them (that
    edge is the package being assembled, not a second entry), but a submodule importing
    something whose import chain comes back to the package is.
    """
    graph = dict(modules(root))
    edges = {name: imports(path, graph) - {name} for name, path in graph.items()}
    for name in edges:  # a module's own parent packages are already being imported
        edges[name] -= parents(name, graph)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                return [*stack, node, dep]
            if dep not in state and (cycle := visit(dep, [*stack, node])):
                return cycle
        state[node] = "done"
        return None

    for name in sorted(edges):
        if name not in state and (cycle := visit(name, [])):
            return cycle
    return None


def plant(root, files):
    """Writes a small library tree under `root`: {relative path: text}."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_no_import_cycle():
    cycle = find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_planted_parent_package_loop_is_caught(tmp_path):
    """The loop the old check missed: `a.losses` imports `a.models.heads`, which runs
    `a.models/__init__`, which imports `a.models.factory`, which imports `a.losses`."""
    files = {
        "reidjax/__init__.py": "",
        "reidjax/losses.py": "from reidjax.models.heads import f\n",
        "reidjax/models/__init__.py": "from reidjax.models.factory import build\n",
        "reidjax/models/heads.py": "def f(): pass\n",
        "reidjax/models/factory.py": "from reidjax import losses\n",
    }
    plant(tmp_path, files)
    cycle = find_cycle(tmp_path)
    assert cycle is not None and "reidjax.losses" in cycle and "reidjax.models" in cycle, cycle
    (tmp_path / "reidjax/losses.py").write_text("def f(): pass\n")  # the loop removed
    assert find_cycle(tmp_path) is None


def imports_across(source, target, root=ROOT):
    """`{module: [what it imports]}` for the modules `source(name)` picks that import
    modules `target(name)` picks (parent packages included)."""
    known = dict(modules(root))
    found = {}
    for name, path in known.items():
        if source(name):
            bad = sorted(d for d in imports(path, known) if target(d))
            if bad:
                found[name] = bad
    return found


def input_pipeline_imports_of_reidjax(root=ROOT):
    """Modules of `input_pipeline` that import something of `reidjax`, with what."""
    top = lambda name: name.split(".")[0]
    return imports_across(lambda n: top(n) == "input_pipeline", lambda d: top(d) == "reidjax", root)


def test_the_input_pipeline_imports_nothing_of_reidjax():
    assert not input_pipeline_imports_of_reidjax()


def test_a_planted_climb_out_of_the_input_pipeline_is_caught(tmp_path):
    files = {
        "reidjax/__init__.py": "",
        "reidjax/errors.py": "class UserError(Exception): pass\n",
        "input_pipeline/__init__.py": "",
        "input_pipeline/sampling.py": "def f():\n    from reidjax.errors import UserError\n",
    }
    plant(tmp_path, files)
    found = input_pipeline_imports_of_reidjax(tmp_path)
    assert found == {"input_pipeline.sampling": ["reidjax", "reidjax.errors"]}, found


def room_of(name: str) -> str:
    """The room a module lives in: `reidjax.training.hosts` -> `reidjax.training`; a
    module directly under a package is its own room (`reidjax.cli`)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else name


# Rooms that the models must not import: a model is a function of its config and inputs.
ABOVE_MODELS = ("reidjax.training", "reidjax.evaluation", "reidjax.serving")


def models_imports_above(root=ROOT):
    """Modules of `reidjax.models` that import training, evaluation or serving, with what."""
    return imports_across(
        lambda n: room_of(n) == "reidjax.models", lambda d: room_of(d) in ABOVE_MODELS, root
    )


def test_models_import_no_training_evaluation_or_serving():
    assert not models_imports_above()


def test_a_planted_model_reading_the_training_room_is_caught(tmp_path):
    files = {
        "reidjax/__init__.py": "",
        "reidjax/models/__init__.py": "",
        "reidjax/models/heads.py": "def f():\n    from reidjax.training import state\n",
        "reidjax/training/__init__.py": "",
        "reidjax/training/state.py": "",
    }
    plant(tmp_path, files)
    found = models_imports_above(tmp_path)
    assert found == {"reidjax.models.heads": ["reidjax.training", "reidjax.training.state"]}, found


def test_every_room_is_named_in_the_architecture_doc():
    """docs/architecture.md maps every package of the library (`reidjax/<room>/`) and
    names the modules that sit directly under `reidjax/`."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rooms = sorted(p.parent.name for p in (ROOT / "reidjax").glob("*/__init__.py"))
    assert rooms, "no rooms found"
    missing = [r for r in rooms if f"reidjax/{r}/" not in text]
    loose = [p.name for p in (ROOT / "reidjax").glob("*.py") if p.name != "__init__.py"]
    missing += [name for name in loose if name not in text]
    assert not missing, f"not in docs/architecture.md: {missing}"


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


def test_training_imports_neither_pytorch_nor_matplotlib():
    """PyTorch is a test dependency only (tensorboardX would import it whenever it is
    installed), and matplotlib is needed only when a picture is drawn: neither is imported
    by a training or evaluation process before that."""
    code = (
        "import sys; import train; from reidjax.evaluation import eval_lib; "
        "from reidjax.training import train_lib; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib'}))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert fresh.stdout.strip().splitlines()[-1] == "[]"
