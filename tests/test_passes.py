"""Kernel passes (state/passes.py): a pass holds on its port while the process that made it
runs, and dies with it, however that process ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mlflow_magic import contract
from mlflow_magic.state import passes, records

MAKE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from mlflow_magic.state import passes
    print(passes.kernel_pass(Path(sys.argv[1]), 5123), flush=True)
    if sys.argv[2] == "crash":
        os._exit(0)   # no atexit: as after kill -9 or a crash
    sys.stdin.read()  # while this runs, its pass holds
""")


def made_by_another_process(record_dir, how: str):
    proc = subprocess.Popen([sys.executable, "-c", MAKE, str(record_dir), how],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


@pytest.mark.integration
def test_a_pass_holds_on_its_port_while_its_process_runs(tmp_path):
    record_dir = records.record_dir(records.prepare_folder(tmp_path / "data"))
    proc, token = made_by_another_process(record_dir, "exit")
    try:
        assert passes.holds(record_dir, token, 5123)
        assert not passes.holds(record_dir, token, 5124)  # another port: another server
        assert not passes.holds(record_dir, token[:-1] + "x", 5123)
        assert not passes.holds(record_dir, "", 5123)
        path = passes.pass_file(record_dir, token)
        assert oct(path.stat().st_mode & 0o777) == "0o600" and token not in path.read_text()
    finally:
        proc.communicate("")
    assert not passes.holds(record_dir, token, 5123)  # ended normally: removed at exit
    assert list((record_dir / contract.PASSES_DIR).iterdir()) == []


@pytest.mark.integration
def test_a_crashed_kernels_pass_is_dead_and_dropped(tmp_path):
    record_dir = records.record_dir(records.prepare_folder(tmp_path / "data"))
    proc, token = made_by_another_process(record_dir, "crash")
    proc.wait()
    path = passes.pass_file(record_dir, token)
    assert path.exists()  # no atexit ran
    assert not passes.holds(record_dir, token, 5123)
    assert not path.exists()


def test_a_reused_pid_does_not_revive_a_pass(tmp_path):
    """A pass names its process by pid and start time: another process with the pid is not
    the kernel that made it."""
    record_dir = records.record_dir(records.prepare_folder(tmp_path / "data"))
    token = passes.kernel_pass(record_dir, 5123)
    path = passes.pass_file(record_dir, token)
    found = json.loads(path.read_text())
    path.write_text(json.dumps({**found, "born": found["born"] - 3600}))
    assert not passes.holds(record_dir, token, 5123)


def test_one_pass_per_server_and_process(tmp_path):
    record_dir = records.record_dir(records.prepare_folder(tmp_path / "data"))
    first = passes.kernel_pass(record_dir, 5123)
    assert passes.kernel_pass(record_dir, 5123) == first
    assert passes.kernel_pass(record_dir, 5124) != first
    assert passes.holds(record_dir, first, 5123) and os.getpid() > 0
