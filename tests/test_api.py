"""The Python API's own behaviour (pure): an unforeseen system error is one paragraph too."""

from __future__ import annotations

import errno

import pytest
from IPython.core.error import UsageError

import mlflow_magic
from mlflow_magic import api


@pytest.fixture
def status_fails(monkeypatch):
    """The manager meets an error nobody foresaw (say, an NFS home that went away)."""
    def fail(data_dir):
        raise OSError(errno.ESTALE, "Stale file handle", str(data_dir))

    monkeypatch.setattr(api, "server_status", fail)


def test_an_unforeseen_os_error_is_one_paragraph_naming_the_path(status_fails, tmp_path):
    with pytest.raises(mlflow_magic.MlflowMagicError) as info:
        mlflow_magic.status(tmp_path)
    message = str(info.value)
    assert message.startswith("mlflow_magic could not read the server's status: Stale file")
    assert str(tmp_path) in message and "\n" not in message
    assert isinstance(info.value.__cause__, OSError)  # the original stays for debugging


def test_in_a_notebook_it_has_no_traceback(status_fails, ip, tmp_path):
    with pytest.raises(UsageError, match="Stale file handle"):
        ip.run_line_magic("mlflow_server", f"status --path {tmp_path}")


def test_errors_of_ours_pass_unchanged():
    @api.explained("do it")
    def refuse():
        raise mlflow_magic.MlflowMagicError("already one paragraph")

    with pytest.raises(mlflow_magic.MlflowMagicError, match=r"^already one paragraph$"):
        refuse()
