"""The layout says which process code runs in, and the imports keep to it.

The MLflow server process must not load the kernel's code (the manager, the magics, IPython):
it would cost every start and tie the server to modules it never uses. Module-level import
cycles make the order of imports matter and break partial imports in a fresh process. Both are
read from the source (AST), and the server's entry is also imported for real in a fresh
interpreter, so what Python actually loads is checked too.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mlflow_magic"

#: Our modules that code in the server process may use: its own folder and the shared ones.
SERVER_MAY_IMPORT = ("mlflow_magic.server", "mlflow_magic.contract", "mlflow_magic.internals",
                     "mlflow_magic.paths", "mlflow_magic.state.logfile",
                     "mlflow_magic.state.passes", "mlflow_magic.state.journal",
                     "mlflow_magic.state.owned")
#: The entry points the server process starts from (``python -m``, the app uvicorn loads).
SERVER_ENTRIES = ("mlflow_magic.server.serve", "mlflow_magic.server.app")


def module_name(path: Path) -> str:
    """``mlflow_magic/server/serve.py`` → ``mlflow_magic.server.serve``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The modules of ours an ``import`` statement loads (a ``from . import x`` may name a
    module or a name in the package: both are returned, the caller keeps the ones that exist)."""
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def imports(top_level_only: bool) -> dict[str, set[str]]:
    """Each of our modules → our modules it imports (those under ``if TYPE_CHECKING`` are left
    out: they never run). With ``top_level_only``, imports inside functions are left out too."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        found: set[str] = set()
        pending: list[ast.AST] = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                pending.extend(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom):
                found.update(resolve(name, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                    ast.Lambda)):
                continue
            pending.extend(ast.iter_child_nodes(node))
        graph[name] = {m for m in found if m in paths and m != name}
    # Importing a.b.c runs a/__init__ and a/b/__init__ first.
    for deps in graph.values():
        for dep in list(deps):
            parts = dep.split(".")
            deps.update(".".join(parts[:i]) for i in range(1, len(parts)) if
                        ".".join(parts[:i]) in paths)
    return graph


def reachable(graph: dict[str, set[str]], starts: tuple[str, ...]) -> set[str]:
    """Every module ``starts`` load, directly or through others."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def allowed_in_server(module: str) -> bool:
    return module in ("mlflow_magic", "mlflow_magic.state") or any(
        module == allowed or module.startswith(allowed + ".") for allowed in SERVER_MAY_IMPORT)


def test_the_server_process_imports_only_the_server_and_shared_modules():
    graph = imports(top_level_only=False)
    # The package's own functions (``load_ipython_extension``) run only in IPython.
    graph["mlflow_magic"] = imports(top_level_only=True)["mlflow_magic"]
    loaded = reachable(graph, SERVER_ENTRIES)
    assert "mlflow_magic.server.gate" in loaded  # the walk follows ``from . import gate``
    outside = sorted(m for m in loaded if not allowed_in_server(m))
    assert not outside, f"the server process would import {outside}"


def test_the_package_itself_imports_nothing_of_ours_at_import_time():
    """``import mlflow_magic`` (which every process runs first) must stay empty: the server
    process and MLflow's header hook both start with it."""
    assert imports(top_level_only=True)["mlflow_magic"] == set()


def test_no_module_level_import_cycles():
    graph = imports(top_level_only=True)
    for package in [m for m in graph if (PACKAGE.parent / m.replace(".", "/")).is_dir()]:
        for deps in graph.values():
            deps.discard(package)  # a package's __init__ runs before its modules: not a cycle
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append([*trail[trail.index(dep):], dep] if dep in trail else [module, dep])
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "module-level import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_a_cycle_would_be_found(monkeypatch):
    """The cycle check itself can fail: a graph with a → b → a is reported."""
    def fake(top_level_only: bool) -> dict[str, set[str]]:
        return {"mlflow_magic": set(), "mlflow_magic.a": {"mlflow_magic.b"},
                "mlflow_magic.b": {"mlflow_magic.a"}}

    monkeypatch.setattr(sys.modules[__name__], "imports", fake)
    cycle = re.escape("mlflow_magic.a → mlflow_magic.b → mlflow_magic.a")
    with pytest.raises(AssertionError, match=cycle):
        test_no_module_level_import_cycles()


@pytest.mark.integration
def test_the_server_entry_loads_no_kernel_code_when_really_imported():
    """What Python loads for ``python -m mlflow_magic.server.serve`` (up to ``main``)."""
    code = ("import json, sys, mlflow_magic.server.serve, mlflow_magic.server.gate, "
            "mlflow_magic.server.failures, mlflow_magic.server.newdb, mlflow_magic.server.schema;"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mlflow_magic'))));"
            "print(json.dumps(sorted(m for m in ('IPython', 'ipywidgets', 'tornado', 'filelock')"
            " if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    ours, foreign = json.loads(out[0]), json.loads(out[1])
    assert "mlflow_magic.server.serve" in ours
    assert [m for m in ours if not allowed_in_server(m)] == []
    assert foreign == []


def test_every_folder_says_which_process_it_runs_in():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "runs" in doc or init.parent == PACKAGE, f"{init} has no docstring saying where"


def test_no_module_hides_a_name_of_the_api():
    """``mlflow_magic.connect()`` is looked up lazily; a submodule of that name, once imported,
    would replace it with a module ("'module' object is not callable")."""
    import mlflow_magic

    hidden = [name for name in mlflow_magic._LAZY
              if (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()]
    assert not hidden, f"modules named like API functions: {hidden}"


# --- one way down ------------------------------------------------------------------------------

#: The core's layers, bottom first. A module imports only from its own package, from lower
#: layers, or (in the base layer) from other base modules; imports inside functions count.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("contract", "errors", "internals", "paths", "tracking", "results"),
    ("settings",),
    ("state",),
    ("security",),
    ("remote",),
    ("syncer",),  # the sync process's own code (``start --sync-to``)
    ("lifecycle",),
    ("api", "hook"),
    ("front",),
    ("notebook", "jupyter", "cli"),
    ("proxy",),  # the launcher's old entry point: a shim over jupyter/launcher.py
)
#: The MLflow server's and the keeper's own code stand apart (see SERVER_MAY_IMPORT and
#: KEEPER_MAY_IMPORT).
APART = ("server", "keeper")
#: The keeper lives as long as a folder's server is wanted, in 10 to 15 MB: the standard
#: library, the names between processes and the checked read of a private file, nothing
#: else of ours.
KEEPER_MAY_IMPORT = ("mlflow_magic.keeper", "mlflow_magic.contract", "mlflow_magic.state.owned")


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer, unit) of one of our modules: its package under mlflow_magic, or itself."""
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself: the entry of every front end, above them all
    unit = parts[1]
    for level, units in enumerate(LAYERS):
        if unit in units:
            return level, unit
    return None


def test_every_module_has_a_layer():
    units = {m.split(".")[1] for m in imports(top_level_only=False) if m.count(".")}
    placed = {u for layer in LAYERS for u in layer} | set(APART)
    assert units <= placed, f"modules with no layer: {sorted(units - placed)}"


def test_imports_go_one_way_down():
    wrong = []
    for module, deps in imports(top_level_only=False).items():
        here = layer_of(module)
        if here is None:
            continue
        for dep in deps:
            there = layer_of(dep)
            if there is None:
                continue  # the package's __init__ (its lazy API), or the server's own
            same_unit = there[1] == here[1]
            if there[0] > here[0] or (there[0] == here[0] and not same_unit and here[0] != 0):
                wrong.append(f"{module} → {dep}")
    assert not wrong, "imports against the layers: " + "; ".join(sorted(wrong))


def test_no_import_cycle_at_all_lazy_imports_included():
    graph = imports(top_level_only=False)
    for package in [m for m in graph if (PACKAGE.parent / m.replace(".", "/")).is_dir()]:
        for deps in graph.values():
            deps.discard(package)
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(" → ".join([*trail[trail.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_a_wrong_way_import_would_be_found(monkeypatch):
    def fake(top_level_only: bool) -> dict[str, set[str]]:
        return {"mlflow_magic.state.records": {"mlflow_magic.front.render"},
                "mlflow_magic.front.render": set()}

    monkeypatch.setattr(sys.modules[__name__], "imports", fake)
    wrong_way = re.escape("mlflow_magic.state.records → mlflow_magic.front")
    with pytest.raises(AssertionError, match=wrong_way):
        test_imports_go_one_way_down()


def test_the_keeper_imports_only_itself_the_contract_and_the_owned_read():
    graph = imports(top_level_only=False)
    graph["mlflow_magic"] = imports(top_level_only=True)["mlflow_magic"]
    loaded = reachable(graph, ("mlflow_magic.keeper.main",))
    # A package's own __init__ is only a way through: what it imports is in ``loaded`` too.
    outside = sorted(m for m in loaded if m != "mlflow_magic" and not any(
        m == allowed or m.startswith(allowed + ".") for allowed in KEEPER_MAY_IMPORT)
        and not (PACKAGE.parent / m.replace(".", "/")).is_dir())
    assert not outside, f"the keeper would import {outside}"
