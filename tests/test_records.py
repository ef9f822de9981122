"""The folder's record, private files and index (no server)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from mlflow_magic.settings.options import ServerOptions
from mlflow_magic.state import records


def record(folder, **changes) -> records.ServerRecord:
    values = dict(data_dir=str(folder), pid=os.getpid(), create_time=1.0, host="127.0.0.1",
                  port=5000, url="http://127.0.0.1:5000", started_at=0.0,
                  mlflow_version="3", settings={}, command=[], log_path="", token="t")
    values.update(changes)
    return records.ServerRecord(**values)


def test_folder_and_files_are_private(tmp_path):
    folder = records.prepare_folder(tmp_path / "data")
    records.write_record(record(folder))
    records.write_options(folder, ServerOptions(backend_store_uri="postgresql://u:pw@h/d"))
    assert stat.S_IMODE(records.record_dir(folder).stat().st_mode) == 0o700
    for path in (records.record_path(folder), records.options_path(folder)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert records.read_options(folder).backend_store_uri == "postgresql://u:pw@h/d"


def test_an_older_world_readable_folder_is_made_private(tmp_path):
    (tmp_path / "data" / ".mlflow_magic").mkdir(parents=True, mode=0o755)
    records.prepare_folder(tmp_path / "data")
    assert stat.S_IMODE((tmp_path / "data" / ".mlflow_magic").stat().st_mode) == 0o700


@pytest.mark.parametrize("text", [
    "", "not json", "[]", "42", '{"pid": 1}',
    json.dumps({**json.loads(record("/x").to_json()), "pid": "abc"}),
    json.dumps({**json.loads(record("/x").to_json()), "settings": None}),
    json.dumps({**json.loads(record("/x").to_json()), "create_time": "yesterday"}),
])
def test_a_corrupted_or_hand_edited_record_is_no_record(tmp_path, text):
    folder = records.prepare_folder(tmp_path / "data")
    records.record_path(folder).write_text(text)
    assert records.read_record(folder) is None


def test_a_record_round_trips(tmp_path):
    folder = records.prepare_folder(tmp_path / "data")
    written = record(folder, inherited_env=["MLFLOW_S3_ENDPOINT_URL"], attached_pid=12)
    records.write_record(written)
    assert records.read_record(folder) == written
    assert folder in list(records.known_data_dirs())


def test_a_record_from_another_host_is_not_ours(tmp_path):
    other = record(tmp_path, hostname="some-other-host")
    assert not records.on_this_host(other)
    assert records.process_of(other) is None
