"""Masking secrets in URIs, arguments and log lines (pure)."""
from __future__ import annotations

import pytest

from mlflow_magic.settings.masking import mask_args, mask_text, mask_uri


@pytest.mark.parametrize(("uri", "masked"), [
    ("postgresql://u:p@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql+psycopg2://u:p%40ss@h/db?sslmode=require",
     "postgresql+psycopg2://u:***@h/db?sslmode=require"),
    ("https://user:tok@mlflow.example.org", "https://user:***@mlflow.example.org"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    (None, None),
])
def test_mask_uri(uri, masked):
    assert mask_uri(uri) == masked



def test_mask_args():
    assert mask_args(["--x", "mysql://a:b@h/d"]) == ["--x", "mysql://a:***@h/d"]
    assert mask_args(["--read-replica-backend-store-uri=postgresql://a:b@h/d",
                      "--secret-key", "abc", "--workers", "2"]) == [
        "--read-replica-backend-store-uri=postgresql://a:***@h/d", "--secret-key", "***",
        "--workers", "2"]



@pytest.mark.parametrize(("uri", "masked"), [
    ("ftp://bob:pw@ftp.example.org/arts", "ftp://bob:***@ftp.example.org/arts"),
    ("sftp://bob:pw@host/path", "sftp://bob:***@host/path"),
    ("https://h/x?password=abc&x=1", "https://h/x?password=***&x=1"),
    ("wasbs://c@acct.blob.core.windows.net/p?sig=xyz", "wasbs://c@acct.blob.core.windows.net/p?sig=***"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
])
def test_mask_uri_covers_artifact_stores_and_query_secrets(uri, masked):
    assert mask_uri(uri) == masked



def test_mask_text_masks_uris_inside_log_lines():
    line = "OperationalError: postgresql://user:hunter2@db/x failed; see ?token=abc&y=1"
    assert mask_text(line) == ("OperationalError: postgresql://user:***@db/x failed; "
                               "see ?token=***&y=1")
