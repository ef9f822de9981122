"""tracking.py: environment variables set for a while (pointing the process at a server is
checked wherever a kernel starts one: test_magics.py, test_start.py)."""

from __future__ import annotations

import os

import pytest

from mlflow_magic import tracking


def test_environment_sets_for_a_while_then_puts_each_variable_back(monkeypatch):
    monkeypatch.setenv("MM_TEST_SET", "before")
    monkeypatch.delenv("MM_TEST_UNSET", raising=False)
    monkeypatch.setenv("MM_TEST_KEPT", "kept")
    with pytest.raises(RuntimeError), tracking.environment(
            "MM_TEST_KEPT", MM_TEST_SET="during", MM_TEST_UNSET="during"):
        assert os.environ["MM_TEST_SET"] == os.environ["MM_TEST_UNSET"] == "during"
        os.environ["MM_TEST_KEPT"] = "changed by a library"
        raise RuntimeError("even when the block fails")
    assert os.environ["MM_TEST_SET"] == "before" and os.environ["MM_TEST_KEPT"] == "kept"
    assert "MM_TEST_UNSET" not in os.environ

