"""The README's promises name tests that exist, and CI runs the README's own test command.

A guarantee whose test was renamed or deleted would still read as proven; a CI script that
drifted from the README would test something other than what a new user runs.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEFAULT_FILE = "tests/test_lifecycle.py"  # "unless named otherwise", says the README


def guarantee_rows() -> list[str]:
    """The "proven by" cell of each row of the Guarantees table."""
    section = README.split("## Guarantees", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return [row.rstrip(" |").rsplit(" | ", 1)[1] for row in rows[1:]]


def named_tests(cell: str) -> list[tuple[str, str | None]]:
    """``(file, test)`` for every backticked name in a cell: ``tests/x.py`` (the whole file),
    ``tests/x.py::test_y``, ``::test_y`` (the file named before it) or ``test_y`` (the
    lifecycle tests)."""
    found: list[tuple[str, str | None]] = []
    last_file = DEFAULT_FILE
    for name in re.findall(r"`([^`]+)`", cell):
        if name.startswith("tests/"):
            file, _, test = name.partition("::")
            last_file = file
            found.append((file, test or None))
        elif name.startswith("::"):
            found.append((last_file, name[2:]))
        elif name.startswith("test_"):
            found.append((DEFAULT_FILE, name))
    return found


def defined_tests(file: str) -> set[str]:
    tree = ast.parse((ROOT / file).read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test_")}


def test_every_guarantee_names_tests_that_exist():
    cells = guarantee_rows()
    assert len(cells) >= 20
    missing = []
    for cell in cells:
        names = named_tests(cell)
        assert names, f"a guarantee names no test: {cell}"
        for file, test in names:
            if not (ROOT / file).is_file():
                missing.append(file)
            elif test is not None and test not in defined_tests(file):
                missing.append(f"{file}::{test}")
    assert not missing, f"the README's guarantees name tests that do not exist: {missing}"


def test_a_renamed_test_would_be_caught():
    assert named_tests("`tests/test_docs.py::test_gone`, `::test_every_guarantee_names_tests_"
                       "that_exist`, `test_x`") == [
        ("tests/test_docs.py", "test_gone"),
        ("tests/test_docs.py", "test_every_guarantee_names_tests_that_exist"),
        (DEFAULT_FILE, "test_x")]
    assert "test_gone" not in defined_tests("tests/test_docs.py")


def test_ci_runs_exactly_the_readmes_test_command():
    blocks = re.findall(r"```bash\n(.+?)\n```", README, re.S)
    test_command = next(b for b in blocks if b.startswith("bash .ci/setup"))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, "the last command of .ci/run must be the README's test command"
    assert ci[-1] == test_command


def test_the_fast_path_installs_what_it_runs():
    """The README's first look at the tests installs the test extra into the venv it runs."""
    blocks = re.findall(r"```bash\n(.+?)\n```", README, re.S)
    fast = next(b for b in blocks if '-m "not integration"' in b)
    install, run = fast.split(" && .venv/bin/python -m pytest")
    assert '.venv/bin/pip install -e ".[test]"' in install and install.startswith("python3 -m venv")
    assert run.strip() == '-m "not integration"'


# --- every reference the docs make resolves --------------------------------------------------

PACKAGE = ROOT / "mlflow_magic"
ROLE = re.compile(r":(mod|func|class|data|meth|attr|exc):`~?([\w.]+)`")
#: Files of the user's own that the docs name: a script the examples run (``!python
#: train.py``), the Jupyter config an admin writes.
USERS_FILES = {"train.py", "jupyter_server_config.py"}


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def index() -> dict[str, dict[str, set[str]]]:
    """Each of our modules → its top-level names → their members (a class's methods and
    attributes; empty for anything else), read from the source: nothing is imported."""
    found: dict[str, dict[str, set[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        names: dict[str, set[str]] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names[node.name] = set()
            elif isinstance(node, ast.ClassDef):
                names[node.name] = {n.name for n in node.body if isinstance(
                    n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))} | {
                    t.id for n in node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                    if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(t, ast.Name):
                        names[t.id] = set()
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update({(a.asname or a.name).split(".")[0]: set() for a in node.names})
        found[module_of(path)] = names
    return found


INDEX = index()


def defined(dotted: str) -> bool:
    """``dotted`` is one of our modules, or a name (a class's member) in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if module in INDEX:
            rest = parts[cut:]
            if not rest:
                return True
            names = INDEX[module]
            if rest[0] not in names:
                return False
            return len(rest) == 1 or rest[1] in names[rest[0]] or not names[rest[0]]
    return False


def resolves(reference: str, module: str) -> bool:
    """As Sphinx looks a name up: in the module itself, then its packages, then absolute;
    a name of another project is that project's to check."""
    parts = module.split(".")
    scopes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    if any(defined(f"{scope}.{reference}") for scope in scopes) or defined(reference):
        return True
    first = reference.split(".")[0]
    return first != "mlflow_magic" and importlib.util.find_spec(first) is not None


def test_every_reference_in_a_docstring_resolves():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_of(path)
        members = set().union(*INDEX[module].values())  # :meth:`x` inside a class's docstring
        for role, name in ROLE.findall(path.read_text()):
            if role in ("meth", "attr") and name in members:
                continue
            if not resolves(name, module):
                broken.append(f"{path.relative_to(ROOT)}: :{role}:`{name}`")
    assert not broken, "references to nothing: " + "; ".join(broken)


def files_named(text: str) -> set[str]:
    """The source files a document names: ``mlflow_magic/x/y.py``, ``x/y.py``, ``y.py``."""
    return set(re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.py)\b", text))


def test_every_file_the_readme_and_contributing_name_exists():
    ours = [p for p in ROOT.rglob("*.py") if not any(part.startswith(".venv")
                                                      for part in p.parts)]
    names = {p.name for p in ours} | USERS_FILES
    tails = {"/".join(p.relative_to(ROOT).parts[-k:]) for p in ours for k in (2, 3, 4)}
    missing = []
    for doc in ("README.md", "CONTRIBUTING.md"):
        for named in files_named((ROOT / doc).read_text()):
            known = named in names if "/" not in named else (named in tails
                                                              or (ROOT / named).is_file())
            if not known:
                missing.append(f"{doc}: {named}")
    assert not missing, f"the docs name files that do not exist: {missing}"


def test_a_broken_reference_would_be_found():
    assert resolves("state.records.ServerRecord", "mlflow_magic.api")
    assert resolves("records", "mlflow_magic.state.processes")
    assert resolves("ServerRecord.uptime", "mlflow_magic.state.records")
    assert not resolves("registry", "mlflow_magic.state.processes")
    assert not resolves("mlflow_magic.manager", "mlflow_magic.api")
    assert files_named("see `mlflow_magic/manager.py` and serve.py") == {
        "mlflow_magic/manager.py", "serve.py"}
