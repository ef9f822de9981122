"""How results read, as text (terminals, saved notebooks) and HTML (front/render.py, pure)."""

from __future__ import annotations

import time

import pytest

from mlflow_magic.front.render import human_duration
from mlflow_magic.results import ServerList, ServerStatus
from mlflow_magic.state.records import ServerRecord


@pytest.mark.parametrize(("seconds", "said"), [
    (0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"),
    (3660, "1 h 1 min"), (86399, "23 h 59 min"), (86400, "1 d"), (90000, "1 d 1 h"),
])
def test_human_duration(seconds, said):
    assert human_duration(seconds) == said


def record(data_dir: str, port: int, started_ago: float) -> ServerRecord:
    return ServerRecord(
        data_dir=data_dir, pid=4242, create_time=0.0, host="127.0.0.1", port=port,
        url=f"http://127.0.0.1:{port}", started_at=time.time() - started_ago,
        mlflow_version="3.17.2", settings={"backend_store_uri": "postgresql://u:pw@db/x"},
        command=[], log_path=f"{data_dir}/.mlflow_magic/server.log")


def test_an_empty_list_says_so():
    empty = ServerList([])
    assert empty.text() == "No MLflow servers are known to be running."
    assert "No MLflow servers" in empty.html()


def test_the_list_is_one_aligned_row_per_server_with_html_escaped():
    listed = ServerList([
        ServerStatus("/home/a/mlflow_data", "running", record("/home/a/mlflow_data", 5000, 7300)),
        ServerStatus("/home/a/<b>x</b>", "crashed"),
    ])
    header, running, crashed = listed.text().splitlines()
    assert header.split() == ["STATE", "URL", "PID", "UP", "DATA", "FOLDER"]
    assert running.split() == ["running", "http://127.0.0.1:5000", "4242", "2", "h", "1", "min",
                               "/home/a/mlflow_data"]
    assert crashed.split()[:4] == ["crashed", "-", "-", "-"]
    assert header.index("DATA FOLDER") == running.index("/home/a/mlflow_data")
    page = listed.html()
    assert page.count("<tr>") == 3 and "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def test_a_status_never_shows_a_password():
    status = ServerStatus("/d", "running", record("/d", 5001, 5))
    assert "pw@" not in status.text() + status.html()
