"""The ways in that another local user and a page of another site tried, each as an attack.

The attacker is ``nobody`` (runuser) with the system's Python and no credential but what it
forges or finds; every test checks that nothing was read, created or written, and that the
owner's own way in still works. Each test is named in the README's threat model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
from conftest import (
    BROWSER_MARKS,
    OTHER_USER,
    SYSTEM_PYTHON,
    as_other_user,
    lure_at,
    rest,
    stop_group,
    wait_for,
)
from test_keeper import kill_everything
from test_privacy import busy_server  # noqa: F401 - a fixture of the server kinds attacked

import mlflow_magic
from mlflow_magic import contract
from mlflow_magic.contract import KEY_HEADER
from mlflow_magic.front import commands
from mlflow_magic.state import passes, records

pytestmark = pytest.mark.integration

#: Forwarding headers that a web server trusting loopback would take as the client's address.
FORWARDED = {
    "X-Forwarded-For host:port": lambda port: {"X-Forwarded-For": f"127.0.0.1:{port}"},
    "X-Forwarded-For loopback": lambda port: {"X-Forwarded-For": "127.0.0.1"},
    "X-Forwarded-For remote": lambda port: {"X-Forwarded-For": "10.9.9.9"},
    "X-Forwarded-For [::1]:port": lambda port: {"X-Forwarded-For": f"[::1]:{port}"},
    "Forwarded": lambda port: {"Forwarded": f'for="127.0.0.1:{port}";proto=http'},
    "X-Real-IP": lambda port: {"X-Real-IP": "127.0.0.1"},
    "with X-Forwarded-Proto": lambda port: {"X-Forwarded-For": f"127.0.0.1:{port}",
                                            "X-Forwarded-Proto": "https"},
}

#: What another user sends with each set of headers: a read, a create, an artifact upload.
FORGED_CLIENT = """
import json, sys, urllib.error, urllib.request
url, variants = sys.argv[1], json.loads(sys.argv[2])
found = {}
for name, headers in variants.items():
    for method, path, body in (
            ("GET", "/api/2.0/mlflow/experiments/search?max_results=5", None),
            ("POST", "/api/2.0/mlflow/experiments/create", '{"name": "pwned"}'),
            ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/pwned/artifacts/model.pkl", "evil"),
            ("GET", "/", None)):
        request = urllib.request.Request(url + path, method=method,
                                         data=body.encode() if body else None,
                                         headers={"Content-Type": "application/json",
                                                  **headers})
        try:
            with urllib.request.urlopen(request, timeout=20) as resp:
                found[f"{name} {method} {path}"] = resp.status
        except urllib.error.HTTPError as exc:
            found[f"{name} {method} {path}"] = exc.code
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    """A folder's server run by gunicorn (MLflow's own launcher)."""
    data_dir = tmp_path_factory.mktemp("gunicorn") / "mlflow_data"
    server = mlflow_magic.start(data_dir, use=False,
                                extra_args=("--gunicorn-opts", "--workers 1")).server
    yield server
    mlflow_magic.stop(data_dir)


def _experiment_names(url: str) -> list[str]:
    return [e["name"] for e in rest(url, "/api/2.0/mlflow/experiments/search"
                                         "?max_results=1000")["experiments"]]


@pytest.mark.parametrize("which", ["shared_server", "busy_server", "gunicorn_server"])
def test_a_forged_forwarding_header_gets_another_user_nothing(which, other_user, request):
    """X-Forwarded-For naming the server's own port made uvicorn put that address in place
    of the client's, and the kernel's lookup then found the owner's listening socket."""
    server = request.getfixturevalue(which)
    variants = {name: make(server.port) for name, make in FORWARDED.items()}
    done = other_user(FORGED_CLIENT, server.url, json.dumps(variants), timeout=180)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {k: 401 for k in found}, found
    assert "pwned" not in _experiment_names(server.url)
    artifacts = Path(server.settings.get("artifacts_destination") or server.data_dir)
    assert not (artifacts / "0" / "pwned").exists()
    # The owner's own program, with the same headers and no key, still gets in.
    for headers in variants.values():
        assert requests.get(f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1",
                            headers=headers, timeout=30).status_code == 200


def test_a_leaked_kernel_pass_gets_another_user_nothing_behind_any_forwarding_header(
        shared_server, other_user):
    token = passes.kernel_pass(records.record_dir(shared_server.data_dir), shared_server.port)
    url = f"{shared_server.url}/{contract.PASS_PATH}/{token}"
    variants = {"none": {}, **{n: m(shared_server.port) for n, m in FORWARDED.items()}}
    done = other_user(FORGED_CLIENT, url, json.dumps(variants), timeout=180)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {k: 401 for k in found}, found
    assert "pwned" not in _experiment_names(shared_server.url)
    # The owner's frame still gets in with it.
    assert requests.get(f"{url}/ajax-api/2.0/mlflow/experiments/search?max_results=1",
                        headers=BROWSER_MARKS, timeout=30).status_code == 200


def test_the_printed_login_link_opened_first_by_another_user_stays_the_owners(
        shared_server, other_user):
    view = commands.ui_view(shared_server.url)
    link = view.url if "mlflow_magic_login=" in view.url else view.url + view.login
    done = other_user("""
        import sys, urllib.error, urllib.request
        class Stay(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args): return None
        opener = urllib.request.build_opener(Stay)
        try:
            resp = opener.open(urllib.request.Request(sys.argv[1],
                               headers={"Accept": "text/html"}), timeout=20)
            print(resp.status, resp.headers.get("Set-Cookie"))
        except urllib.error.HTTPError as exc:
            print(exc.code, exc.headers.get("Set-Cookie"))
    """, link)
    assert done.stdout.split() == ["401", "None"], done
    # The code was not used up: the owner's browser logs in with it.
    browser = requests.Session()
    page = browser.get(link, timeout=30, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    cookie = next(c for c in browser.cookies if c.name.startswith("mlflow-magic-"))
    # A session cookie copied by another user gets nothing either.
    stolen = other_user("""
        import sys, urllib.error, urllib.request
        try:
            print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers={
                "Cookie": sys.argv[2]}), timeout=20).status)
        except urllib.error.HTTPError as exc:
            print(exc.code)
    """, f"{shared_server.url}/ajax-api/2.0/mlflow/experiments/search?max_results=1",
        f"{cookie.name}={cookie.value}")
    assert stolen.stdout.split() == ["401"], stolen


def test_a_record_planted_in_a_gone_folder_gets_neither_key_nor_request(
        shared_server, shared_tmp, other_user, jupyter):
    """The owner's folder sat in a directory everyone can write; its server died (a reboot)
    and the folder is gone. Another user makes it again with a record naming the owner's
    other folder and a lure of theirs on the recorded port."""
    gone = shared_tmp / f"gone-{time.time_ns()}"
    gone.mkdir()
    gone.chmod(0o777)
    data_dir = gone / "mlflow_data"
    started = mlflow_magic.start(data_dir, use=False).server
    port = started.port
    kill_everything(started)
    shutil.rmtree(data_dir)
    planted = json.loads(started.to_json())
    planted.update(data_dir=str(shared_server.data_dir), private=True,
                   listener={"pid": 1, "create_time": 0.0, "fd": 3, "inode": 0})
    made = other_user("""
        import os, sys
        folder = os.path.join(sys.argv[1], ".mlflow_magic")
        os.makedirs(folder)
        with open(os.path.join(folder, "server.json"), "w") as fh:
            fh.write(sys.argv[2])
    """, str(data_dir), json.dumps(planted))
    assert made.returncode == 0, made.stderr
    with lure_at(port, shared_tmp) as requests_seen:
        call = mlflow_magic_call(f"http://127.0.0.1:{port}")
        assert call.returncode != 0
        assert f"held by another user ({OTHER_USER})" in call.stderr
        routed = requests.get(f"{jupyter['url']}mlflow-magic/proxy/{port}/api/2.0/mlflow/"
                              "experiments/search", headers=jupyter["auth"], timeout=30)
        assert routed.status_code != 200
        seen = requests_seen()
        assert not [r for r in seen if KEY_HEADER in r["headers"]
                    or "Authorization" in r["headers"]], seen
    assert records.read_record(data_dir) is None


def test_another_users_refused_requests_do_not_keep_a_server_awake(folder, shared_tmp):
    """Another user knocks every second, for longer than the idle timeout: the server
    sleeps all the same (their requests are refused, and only let-in ones count)."""
    server = mlflow_magic.start(folder, use=False, idle_timeout=4).server
    knocker = subprocess.Popen(as_other_user([SYSTEM_PYTHON, "-c", textwrap.dedent("""
        import sys, time, urllib.error, urllib.request
        for _ in range(60):
            try:
                urllib.request.urlopen(sys.argv[1] + "/api/2.0/mlflow/experiments/search",
                                       timeout=5)
            except OSError:
                pass
            time.sleep(1)
    """), server.url]), start_new_session=True)
    try:
        assert wait_for(lambda: mlflow_magic.status(folder).state == "sleeping", timeout=40,
                        interval=1)
        assert knocker.poll() is None  # still knocking
    finally:
        stop_group(knocker, grace=5)


def mlflow_magic_call(url: str) -> subprocess.CompletedProcess:
    """An MLflow call of the owner's, from a fresh process (the request hook adds the key)."""
    return subprocess.run([sys.executable, "-c", "import mlflow; mlflow.search_experiments()"],
                          env={**os.environ, "MLFLOW_TRACKING_URI": url}, capture_output=True,
                          text=True, timeout=120)
