"""The README's promises name tests that exist, and CI runs the README's own test command.

A guarantee whose test was renamed or deleted would still read as proven; a CI script that
drifted from the README would test something other than what a new user runs.
"""

from __future__ import annotations

import ast
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
