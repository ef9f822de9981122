"""The ways in that another local user and a page of another site tried, each as an attack.

The attacker is ``nobody`` (runuser) with the system's Python and no credential but what it
forges or finds; every test checks that nothing was read, created or written, and that the
owner's own way in still works. Each test is named in the README's threat model.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
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
from mlflow_magic.errors import ConfigError
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
    gone.chmod(0o1777)  # as /tmp: everyone may write, nobody may rename what is yours
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


# --- the key and the folder, where another user can reach them -----------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


#: A hosts file that lists ``localhost`` as ``::1`` first, as Debian's default one does.
HOSTS_V6_FIRST = "::1 localhost\n127.0.0.1 localhost\n"


def test_a_lure_on_the_other_address_family_gets_no_key(folder, shared_tmp, tmp_path):
    """The owner's server holds 127.0.0.1:PORT; another user listens on [::1]:PORT. A call
    to ``[::1]`` or to ``localhost`` (resolved to ::1 first, in a mount namespace with such a
    hosts file) is not sent: the lure gets no key and no request."""
    assert _ipv6_loopback(), "this machine has no IPv6 loopback; CI's has"
    server = mlflow_magic.start(folder, use=False).server
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS_V6_FIRST)
    with lure_at(server.port, shared_tmp, host="::1") as requests_seen:
        v6 = mlflow_magic_call(f"http://[::1]:{server.port}")
        assert v6.returncode != 0 and f"held by another user ({OTHER_USER})" in v6.stderr
        by_name = subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
             str(hosts), sys.executable, "-c",
             "import mlflow; mlflow.search_experiments()"],
            env={**os.environ, "MLFLOW_TRACKING_URI": f"http://localhost:{server.port}"},
            capture_output=True, text=True, timeout=120)
        assert by_name.returncode != 0, by_name
        assert f"held by another user ({OTHER_USER})" in by_name.stderr
        assert not [r for r in requests_seen() if KEY_HEADER in r["headers"]]
    # The owner's own address still works, and so does localhost with nobody on ::1.
    assert mlflow_magic_call(server.url).returncode == 0
    assert mlflow_magic_call(f"http://localhost:{server.port}").returncode == 0


def test_a_data_folder_another_user_could_swap_is_refused_before_anything_is_made(
        shared_tmp, other_user, tmp_path):
    """Through a symlink into another user's folder, or under a directory everyone may
    write: refused in one paragraph, nothing created there."""
    theirs = shared_tmp / f"theirs-{time.time_ns()}"
    made = other_user("import os, sys; os.mkdir(sys.argv[1]); os.chmod(sys.argv[1], 0o777)",
                      str(theirs))
    assert made.returncode == 0, made.stderr
    link = tmp_path / "data-link"
    link.symlink_to(theirs)
    with pytest.raises(ConfigError) as info:
        mlflow_magic.start(link / "mlflow_data", use=False)
    assert f"{theirs} belongs to {OTHER_USER}" in str(info.value)
    assert "Choose a folder under your home" in str(info.value)
    assert list(theirs.iterdir()) == []
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(ConfigError, match=r"may be written by every user .* \(mode 0777\)"):
        mlflow_magic.start(open_dir / "mlflow_data", use=False)
    assert list(open_dir.iterdir()) == []
    open_dir.chmod(0o1777)  # sticky, as /tmp: others cannot rename what is yours
    started = mlflow_magic.start(open_dir / "mlflow_data", use=False).server
    mlflow_magic.stop(started.data_dir)


def test_the_cli_takes_no_password_on_its_command_line(folder):
    done = subprocess.run([str(Path(sys.executable).with_name("mlflow-magic")), "start",
                           "--path", str(folder), "--sync-to",
                           "https://me:team-s3cret@team.example.test"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--sync-to holds a password" in done.stderr
    assert "MLFLOW_TRACKING_PASSWORD" in done.stderr and "team-s3cret" not in done.stderr
    assert not folder.exists()


def test_a_page_of_another_site_that_learnt_a_pass_writes_nothing_through_it(
        shared_server, page):
    """In Chromium, a page of another site posts ``model.pkl`` through a kernel pass with a
    no-cors fetch (a typeless Blob: no Content-Type), ``sendBeacon`` and a form: nothing
    lands in the run, and the owner's frame on the same pass still reads."""
    run = rest(shared_server.url, "/api/2.0/mlflow/runs/create",
               {"experiment_id": "0", "run_name": "lured"})["run"]["info"]["run_id"]
    token = passes.kernel_pass(records.record_dir(shared_server.data_dir), shared_server.port)
    through = f"{shared_server.url}/{contract.PASS_PATH}/{token}"
    upload = (f"{through}/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run}"
              "&path=model/model.pkl")
    page.route("https://evil.example/", lambda route: route.fulfill(
        content_type="text/html", body=f"""<!doctype html><title>another site</title>
        <form id=post method=POST enctype=text/plain target=sink action="{upload}">
          <input name=x value=evil></form>
        <iframe name=sink></iframe>
        <script>
          window.fetched = fetch("{upload}", {{mode: "no-cors", method: "POST",
                                               body: new Blob(["evil"])}})
            .then(r => r.type, e => "blocked: " + e);
          window.beaconed = navigator.sendBeacon("{upload}", new Blob(["evil"]));
          document.getElementById("post").submit();
        </script>"""))
    page.goto("https://evil.example/")
    page.evaluate("window.fetched")
    sink = page.frame(name="sink")
    wait_for(lambda: "This MLflow server is private" in sink.content(), timeout=30)
    time.sleep(1)  # the beacon went out with the page
    listed = rest(shared_server.url, f"/api/2.0/mlflow/artifacts/list?run_id={run}")
    assert listed.get("files", []) == [], listed
    # The owner's own frame (same origin as the server) still reads through the pass.
    assert requests.get(f"{through}/ajax-api/2.0/mlflow/runs/get?run_id={run}",
                        headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
                        timeout=30).status_code == 200
