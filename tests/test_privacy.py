"""Private by default, on a machine with several users: tried as another real user would.

The other user is ``nobody`` (runuser), with the system's Python and no credential.
Its lures are real HTTP servers that answer ``/health`` like MLflow and write down
what they were sent. The owner is this test process, its subprocesses and the real
Jupyter server of the ``jupyter`` fixture.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
import requests
from conftest import (
    BROWSER_MARKS,
    OTHER_USER,
    bare_env,
    fetch,
    free_port,
    lure_at,
    owner,
    rest,
    serving,
    wait_for,
)

import mlflow_magic
from mlflow_magic import contract
from mlflow_magic.contract import GATE_HEADER, KEY_HEADER
from mlflow_magic.errors import ConfigError, ConnectError
from mlflow_magic.front import commands
from mlflow_magic.security import keys, ports
from mlflow_magic.state import processes, records

#: What another user tries against a server: (method, path, body).
ATTEMPTS = [
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=5", None),
    ("POST", "/api/2.0/mlflow/experiments/create", b'{"name": "planted"}'),
    ("GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=5", None),
    ("POST", "/graphql", b'{"query": "{ __typename }"}'),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/planted/artifacts/model.pkl", b"evil"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/kept/artifacts/secret.txt", None),
    ("GET", "/get-artifact?path=secret.txt&run_uuid=kept", None),
    ("GET", "/", None),
    ("GET", "/static-files/lib/notebook-trace-renderer/index.html", None),
    ("GET", "/version", None),
    ("GET", "/health", None),
]

OTHER_CLIENT = """
import json, sys, urllib.error, urllib.request
url, attempts = sys.argv[1], json.loads(sys.argv[2])
found = {}
for method, path, body in attempts:
    request = urllib.request.Request(url + path, method=method,
                                     data=body.encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            found[path] = resp.status
    except urllib.error.HTTPError as exc:
        found[path] = exc.code
print(json.dumps(found))
"""


def attempts_of_another_user(other_user, url: str) -> dict[str, int]:
    attempts = [(m, p, b.decode() if b else None) for m, p, b in ATTEMPTS]
    done = other_user(OTHER_CLIENT, url, json.dumps(attempts))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """A server that runs MLflow's own launcher with two uvicorn workers."""
    data_dir = tmp_path_factory.mktemp("busy") / "mlflow_data"
    metrics = tmp_path_factory.mktemp("metrics")
    server = mlflow_magic.start(data_dir, use=False, workers=2,
                                extra_args=("--expose-prometheus", str(metrics))).server
    yield server
    mlflow_magic.stop(data_dir)


@pytest.fixture(scope="module")
def artifacts_only_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("artifacts_only") / "mlflow_data"
    server = mlflow_magic.start(data_dir, use=False, artifacts_only=True).server
    yield server
    mlflow_magic.stop(data_dir)


@pytest.mark.parametrize("which", ["in-process", "workers and MLflow's launcher",
                                   "artifacts only"])
def test_another_user_gets_nothing_from_any_route(which, other_user, request):
    server = {"in-process": "shared_server", "workers and MLflow's launcher": "busy_server",
              "artifacts only": "artifacts_only_server"}[which]
    server = request.getfixturevalue(server)
    if which == "workers and MLflow's launcher":  # both workers, MLflow's own uvicorn
        procs = processes.server_processes(server.pid, server.create_time, server.token)
        assert len(procs) >= 3
    artifacts = Path(server.settings["artifacts_destination"])
    kept = artifacts / "0" / "kept" / "artifacts" / "secret.txt"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("the owner's")

    found = attempts_of_another_user(other_user, server.url)

    assert found.pop("/health") == 200
    assert found == {path: 401 for path in found}, found
    assert not (artifacts / "0" / "planted").exists()
    if which != "artifacts only":
        names = [e["name"] for e in rest(server.url, "/api/2.0/mlflow/experiments/search"
                                         "?max_results=100")["experiments"]]
        assert "planted" not in names
    # The owner gets in, with the key the owner's clients send by themselves.
    assert fetch(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/0/kept/artifacts/"
                 "secret.txt") == b"the owner's"


#: A browser's requests, from a page of any site: the gate wants the key or a login.
BROWSERS = {
    "a fetch from another site": {"Origin": "https://evil.example",
                                  "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
    "a form or frame of another site": {"Sec-Fetch-Site": "cross-site",
                                        "Sec-Fetch-Mode": "navigate"},
    "an address typed in": BROWSER_MARKS,
    "an old browser's write": {"Origin": "null"},
}


@pytest.mark.integration
@pytest.mark.parametrize("which", ["in-process", "workers and MLflow's launcher",
                                   "artifacts only"])
def test_the_owners_own_programs_get_in_with_no_key_and_browsers_do_not(which, request):
    """requests and curl, as a script, R or Java of the owner's send them: no key, no token."""
    server = request.getfixturevalue({"in-process": "shared_server",
                                      "workers and MLflow's launcher": "busy_server",
                                      "artifacts only": "artifacts_only_server"}[which])
    reads = [path for method, path, _ in ATTEMPTS
             if method == "GET" and path != "/health" and "kept" not in path]
    for path in reads:  # past the gate: MLflow answers (an artifacts-only server: its way)
        resp = requests.get(server.url + path, timeout=30)
        assert resp.status_code != 401 and not resp.headers.get(GATE_HEADER), path
    search = f"{server.url}/api/2.0/mlflow-artifacts/artifacts" if which == "artifacts only" \
        else f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    curl = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", search],
                          capture_output=True, text=True, timeout=60, env=bare_env(server.url))
    assert curl.stdout == "200", curl.stdout + curl.stderr
    for browser, marks in BROWSERS.items():
        for method, path, body in ATTEMPTS[:-1]:  # all but /health
            resp = requests.request(method, server.url + path, data=body, headers=marks,
                                    timeout=30)
            assert resp.status_code == 401 and resp.headers.get(GATE_HEADER), (browser, path)
    # DNS rebinding: a page of a name that resolved to 127.0.0.1 sends that name as Host
    rebound = requests.get(search, headers={"Host": f"rebind.example:{server.port}"},
                           timeout=30)
    assert rebound.status_code == 401


def test_a_page_of_another_site_in_the_owners_browser_gets_nothing(shared_server, page):
    """The owner's browser runs as the owner, on a page of another site: its fetch, its form
    post and its frame reach the server and get nothing."""
    evil_page_gets_nothing(page, shared_server.url)


def evil_page_gets_nothing(page, url: str) -> None:
    evil = "https://evil.example/"
    page.route(evil, lambda route: route.fulfill(content_type="text/html", body=f"""
        <!doctype html><title>another site</title>
        <form id=post method=POST target=sink enctype=text/plain
              action="{url}/api/2.0/mlflow/experiments/create">
          <input name='{{"name": "from-a-form", "x": "' value='"}}'></form>
        <iframe name=sink></iframe>
        <iframe id=ui src="{url}/"></iframe>
        <script>
          window.read = fetch("{url}/ajax-api/2.0/mlflow/experiments/search?max_results=5")
            .then(r => r.text(), e => "blocked: " + e);
          window.wrote = fetch("{url}/api/2.0/mlflow/experiments/create",
              {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
               body: JSON.stringify({{name: "from-a-fetch"}})}})
            .then(r => r.type, e => "blocked: " + e);
          document.getElementById("post").submit();
        </script>"""))
    page.goto(evil)
    assert page.evaluate("window.read").startswith("blocked")  # CORS: nothing to read
    page.evaluate("window.wrote")
    sink = page.frame(name="sink")
    # reached the server, refused: the gate's page (a navigation asks for HTML)
    wait_for(lambda: "This MLflow server is private" in sink.content(), timeout=30)
    ui = next(f for f in page.frames if f.url.startswith(url))
    wait_for(lambda: "This MLflow server is private" in ui.content(), timeout=30)
    names = [e["name"] for e in rest(url, "/api/2.0/mlflow/experiments/search"
                                          "?max_results=1000")["experiments"]]
    assert "from-a-form" not in names and "from-a-fetch" not in names


@pytest.mark.parametrize("which", ["in-process", "workers and MLflow's launcher"])
def test_a_kernel_pass_lets_no_other_user_in(which, other_user, request):
    """A saved notebook others can read holds its kernel's pass while that kernel runs:
    another user who copies it still gets nothing, the owner's browser gets in."""
    from mlflow_magic.state import passes

    server = request.getfixturevalue({"in-process": "shared_server",
                                      "workers and MLflow's launcher": "busy_server"}[which])
    token = passes.kernel_pass(records.record_dir(server.data_dir), server.port)
    url = (f"{server.url}/{contract.PASS_PATH}/{token}/ajax-api/2.0/mlflow/"
           "experiments/search?max_results=5")
    assert requests.get(url, headers=BROWSER_MARKS, timeout=30).status_code == 200
    done = other_user("""
        import sys, urllib.error, urllib.request
        # as is, and with a Host naming another port (a WSGI server may read its port there)
        for headers in ({}, {"Host": "127.0.0.1:1"}):
            try:
                request = urllib.request.Request(sys.argv[1], headers=headers)
                print(urllib.request.urlopen(request, timeout=10).status)
            except urllib.error.HTTPError as exc:
                print(exc.code)
    """, url)
    assert done.stdout.split() == ["401", "401"], done


def test_another_user_cannot_read_the_data_at_rest(other_user, folder):
    server = mlflow_magic.start(folder, use=False).server
    os.chmod(folder.parent, 0o755)  # let the other user reach the folder itself
    os.chmod(folder.parent.parent, 0o755)
    reads = other_user("""
        import sys
        for path in sys.argv[1:]:
            try:
                open(path, "rb").read(1)
                print(path, "READ")
            except OSError as exc:
                print(path, type(exc).__name__)
    """, str(folder / "mlflow.db"), str(folder / ".mlflow_magic" / "key"),
        str(records.record_path(folder)), str(records.log_path(folder)))
    assert "READ" not in reads.stdout and reads.stdout.count("PermissionError") == 4, reads
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (folder / "mlflow.db", keys.key_path(folder), records.log_path(folder)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # What the server writes (umask 077): an artifact and its folders are the owner's alone.
    urllib.request.urlopen(urllib.request.Request(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/0/run/artifacts/model.pkl",
        data=b"model", method="PUT", headers=owner(server.url)), timeout=10).close()
    written = folder / "artifacts" / "0" / "run" / "artifacts" / "model.pkl"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "artifacts").stat().st_mode) == 0o700
    assert mlflow_magic.status(folder).warnings == ()


def test_status_names_a_folder_others_can_read_with_the_fix(tmp_path):
    folder = tmp_path / "old_data"
    folder.mkdir(mode=0o755)
    (folder / "mlflow.db").write_bytes(b"")
    (folder / "mlflow.db").chmod(0o644)
    status = mlflow_magic.status(folder)
    assert len(status.warnings) == 1
    assert f"{folder} (mode 0755)" in status.warnings[0]
    assert f"{folder / 'mlflow.db'} (mode 0644)" in status.warnings[0]
    assert f"chmod -R go-rwx {folder}" in status.warnings[0]
    assert "chmod -R go-rwx" in str(status) and "chmod -R go-rwx" in status._repr_html_()


# --- the owner keeps every way in --------------------------------------------------------

FRESH = """
import mlflow
mlflow.set_experiment("owner-paths")
with mlflow.start_run(run_name={name!r}) as run:
    mlflow.log_metric("m", 1.0)
    mlflow.log_text("hello", "note.txt")
print(mlflow.artifacts.load_text(run.info.artifact_uri + "/note.txt"))
"""


def test_the_owner_keeps_every_path_with_no_step(shared_server, tmp_path):
    url = shared_server.url
    # A fresh terminal process: nothing but MLFLOW_TRACKING_URI, as `mlflow-magic start`
    # prints it (no key). MLFLOW_MAGIC_STATE_DIR only stands in for the user's own state
    # folder (~/.local/state/mlflow_magic), which this test run keeps apart.
    bare = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
            "MLFLOW_TRACKING_URI": url, "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_MAGIC_STATE_DIR": os.environ["MLFLOW_MAGIC_STATE_DIR"]}
    done = subprocess.run([sys.executable, "-c", FRESH.format(name="fresh-terminal")],
                          env=bare, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split()[-1] == "hello", done.stderr
    # MLflow's own CLI, from the same bare environment.
    cli = subprocess.run([str(Path(sys.executable).with_name("mlflow")), "experiments",
                          "search"], env=bare, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "owner-paths" in cli.stdout, cli.stderr
    # Another kernel: reuses the server, and logs.
    reuse = ("import mlflow_magic\n"
             f"print(type(mlflow_magic.start({shared_server.data_dir!r})).__name__)\n")
    other = subprocess.run([sys.executable, "-c", reuse + FRESH.format(name="other-kernel")],
                           capture_output=True, text=True, timeout=120)
    lines = other.stdout.split()
    assert other.returncode == 0 and lines[0] == "Reused" and lines[-1] == "hello", other.stderr
    # The key itself never shows: not in the environment, a result, the record or a command.
    key = keys.folder_key(Path(shared_server.data_dir))
    shown = [str(mlflow_magic.status(shared_server.data_dir)), json.dumps(dict(os.environ)),
             records.record_path(Path(shared_server.data_dir)).read_text(),
             " ".join(serving(shared_server).cmdline()),
             records.log_path(Path(shared_server.data_dir)).read_text()]
    assert key and not [text for text in shown if key in text]


@pytest.mark.integration
def test_restart_keeps_the_key_and_other_kernels_keep_working(folder):
    first = mlflow_magic.start(folder, use=False).server
    before = serving(first).pid
    key = keys.folder_key(folder)
    again = mlflow_magic.restart(folder, use=False).server
    assert serving(again).pid != before and keys.folder_key(folder) == key
    assert again.url == first.url
    # A process that had verified the first server is sent to the new one after a check.
    assert rest(again.url, "/api/2.0/mlflow/experiments/search?max_results=1")


def test_the_jupyter_routes_serve_the_owner_only(jupyter, shared_server, other_user):
    base, auth = jupyter["url"], jupyter["auth"]
    port = shared_server.port
    page = requests.get(f"{base}mlflow-magic/proxy/{port}/", headers=auth, timeout=30)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    tile = requests.get(f"{base}mlflow-magic/tile/", headers=auth, timeout=150)
    assert tile.status_code == 200 and "<title>MLflow</title>" in tile.text
    named = requests.get(f"{base}mlflow/api/2.0/mlflow/experiments/search",
                         params={"max_results": 1}, headers=auth, timeout=150)
    assert named.status_code == 200, named.text
    # Another user of the machine, even one who knows Jupyter's port, gets Jupyter's login.
    seen = other_user("""
        import sys, urllib.error, urllib.request
        for path in sys.argv[2:]:
            try:
                with urllib.request.urlopen(sys.argv[1] + path, timeout=30) as resp:
                    body = resp.read().decode()
                    print("login" if "/login" in resp.geturl() and "MLflow" not in body
                          else resp.status)
            except urllib.error.HTTPError as exc:
                print(exc.code)
    """, base, f"mlflow-magic/proxy/{port}/api/2.0/mlflow/experiments/search",
        "mlflow/api/2.0/mlflow/experiments/search", "mlflow-magic/tile/")
    assert seen.stdout.split() == ["login", "login", "login"], seen


# --- never talk to an impostor ---------------------------------------------------------


def test_a_lure_gets_neither_the_request_nor_jupyters_credentials(jupyter, shared_tmp):
    port = free_port()
    with lure_at(port, shared_tmp) as requests_seen:
        answer = requests.get(f"{jupyter['url']}mlflow-magic/proxy/{port}/?token="
                              f"{jupyter['token']}", timeout=30,
                              cookies={"username-127-0-0-1": "jupyter-login", "_xsrf": "x"})
        assert answer.status_code == 404
        assert "No MLflow server of yours" in answer.text
        with_header = requests.get(f"{jupyter['url']}mlflow-magic/proxy/{port}/api/2.0/mlflow/"
                                   "experiments/search", headers=jupyter["auth"], timeout=30)
        assert with_header.status_code == 404
        # The owner's MLflow calls and `connect` do not go there either.
        call = subprocess.run([sys.executable, "-c", "import mlflow; mlflow.search_experiments()"],
                              env={**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"},
                              capture_output=True, text=True, timeout=120)
        assert call.returncode != 0
        assert f"held by another user ({OTHER_USER})" in call.stderr
        with pytest.raises(ConnectError, match=f"held by another user \\({OTHER_USER}\\)"):
            mlflow_magic.connect(f"http://127.0.0.1:{port}", use=False)
        assert requests_seen() == []


@pytest.mark.integration
def test_a_port_taken_over_after_stop_gets_no_run(folder, shared_tmp):
    server = mlflow_magic.start(folder, use=False).server
    client = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    log = [sys.executable, "-c", FRESH.format(name="before-stop")]
    first = subprocess.run(log, env=client, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    mlflow_magic.stop(folder)
    with lure_at(server.port, shared_tmp) as requests_seen:
        after = subprocess.run(log, env=client, capture_output=True, text=True, timeout=120)
        assert after.returncode != 0
        assert "This MLflow call was not sent" in after.stderr and "Traceback" in after.stderr
        assert requests_seen() == []
    # A new start of the folder takes a port of its own; every run is still there.
    again = mlflow_magic.start(folder, use=False).server
    runs = rest(again.url, "/api/2.0/mlflow/runs/search", {"experiment_ids": ["1"]})["runs"]
    assert [r["info"]["run_name"] for r in runs] == ["before-stop"]


@pytest.mark.integration
def test_the_key_never_goes_to_another_address(folder, shared_tmp, tmp_path):
    """A request to any address but this user's verified server carries no key: not to a
    `connect`-ed server elsewhere (its name is not loopback), not to the user's own other
    programs on this machine."""
    mine = mlflow_magic.start(folder, use=False).server
    port = free_port()
    record = tmp_path / "seen.jsonl"
    stub = subprocess.Popen([sys.executable, str(Path(__file__).with_name("stub_server.py")),
                             "--port", str(port)],
                            env={**os.environ, "STUB_RECORD": str(record)})
    try:
        wait_for(lambda: record.exists() or _answers(port))
        # The same MLflow process talks to our server, then to a team server by name (that
        # name resolves to this stub, as DNS would resolve a team's host), then to a local
        # program of this user's.
        code = textwrap.dedent(f"""
            import socket
            resolve = socket.getaddrinfo
            socket.getaddrinfo = lambda host, *a, **k: resolve(
                "127.0.0.1" if host == "team.example.test" else host, *a, **k)
            import mlflow
            from mlflow.utils.rest_utils import MlflowHostCreds, http_request
            for url in ({mine.url!r}, "http://team.example.test:{port}",
                        "http://127.0.0.1:{port}"):
                print(http_request(MlflowHostCreds(url), "/api/2.0/mlflow/experiments/search"
                                   "?max_results=1", "GET").status_code)
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and done.stdout.split() == ["200", "404", "404"], done
        sent = [h for h in (json.loads(line)["headers"] for line in record.read_text().splitlines())
                if h.get("User-Agent", "").startswith("mlflow")]
        assert len(sent) == 2 and not [h for h in sent if KEY_HEADER in h]
        assert {h.get("Host") for h in sent} == {f"team.example.test:{port}",
                                                 f"127.0.0.1:{port}"}
    finally:
        stub.terminate()
        stub.wait()


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
        return True
    except OSError:
        return False


# --- folders of other users --------------------------------------------------------------


def test_a_folder_of_another_user_is_named_and_refused(other_user, shared_tmp):
    theirs = shared_tmp / "their_data"
    made = other_user("import os, sys; os.makedirs(sys.argv[1] + '/.mlflow_magic')",
                      str(theirs))
    assert made.returncode == 0, made.stderr
    for attempt in (lambda: mlflow_magic.start(theirs, use=False),
                    lambda: mlflow_magic.stop(theirs),
                    lambda: mlflow_magic.restart(theirs, use=False)):
        with pytest.raises(ConfigError, match=f"belongs to {OTHER_USER}") as info:
            attempt()
        assert "Use a folder of your own" in str(info.value)
    status = mlflow_magic.status(theirs)
    assert status.state == "foreign" and OTHER_USER in str(status)
    assert not (theirs / "mlflow.db").exists()


def test_a_shared_folder_whose_server_is_another_users_is_refused(other_user, shared_tmp):
    """A team folder open to all (0777): another user's server record folder is in it."""
    shared = shared_tmp / "team_folder"
    shared.mkdir()
    shared.chmod(0o777)
    made = other_user("import os, sys; os.mkdir(sys.argv[1], 0o700)",
                      str(shared / ".mlflow_magic"))
    assert made.returncode == 0, made.stderr
    with pytest.raises(ConfigError, match=f"{shared / '.mlflow_magic'} belongs to {OTHER_USER}"):
        mlflow_magic.start(shared, use=False)
    assert sorted(p.name for p in shared.iterdir()) == [".mlflow_magic"]


def test_a_symlinked_record_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / ".mlflow_magic").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        mlflow_magic.start(folder, use=False)
    assert list(elsewhere.iterdir()) == []


def test_private_files_are_written_without_following_symlinks(tmp_path):
    folder = records.prepare_folder(tmp_path / "data")
    target = tmp_path / "victim.txt"
    target.write_text("untouched")
    link = records.record_dir(folder) / "options.json"
    link.symlink_to(target)
    records.write_options(folder, mlflow_magic.ServerOptions(port=5001))
    assert target.read_text() == "untouched" and not link.is_symlink()
    records.record_path(folder).symlink_to(target)
    assert records.read_record(folder) is None  # a symlinked record is no record


# --- teams -------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_team_server_has_no_gate_and_a_warning_without_a_login(folder):
    result = mlflow_magic.start(folder, use=False, host="0.0.0.0")
    server = result.server
    assert not server.private and not keys.key_path(folder).exists()
    assert any("beyond this machine" in w and "--app-name basic-auth" in w
               for w in result.warnings)
    assert "beyond this machine" in str(mlflow_magic.status(folder))
    # Its clients elsewhere have no key: MLflow answers them as documented.
    with urllib.request.urlopen(f"{server.url}/api/2.0/mlflow/experiments/search"
                                "?max_results=1", timeout=10) as resp:
        assert resp.status == 200 and not resp.headers.get(GATE_HEADER)
    assert ports.headers_for_url(server.url) == {}


def test_the_server_does_not_inherit_jupyters_credentials(folder, stub, monkeypatch):
    for name in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTER_TOKEN"):
        monkeypatch.setenv(name, "a-jupyter-credential")
    stub("serve")
    server = mlflow_magic.start(folder, use=False).server
    seen = serving(server).environ()
    assert not [name for name, value in seen.items() if value == "a-jupyter-credential"]


# --- a browser without Jupyter -----------------------------------------------------------


def test_a_one_time_link_logs_a_browser_in_once(shared_server):
    view = commands.ui_view(shared_server.url)
    assert view.login and "one-time link" in str(view)
    browser = requests.Session()
    page = browser.get(view.url, timeout=30, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    assert page.url == shared_server.url + "/"
    assert browser.get(f"{shared_server.url}/ajax-api/2.0/mlflow/experiments/search",
                       params={"max_results": 1}, timeout=30).status_code == 200
    cookie = next(c for c in browser.cookies if c.name.startswith("mlflow-magic-"))
    assert cookie.has_nonstandard_attr("HttpOnly")
    # The same link again, in another browser: used up.
    again = requests.get(view.url, timeout=30, headers={"Accept": "text/html"})
    assert again.status_code == 401 and "expired or was already used" in again.text
    assert requests.get(shared_server.url + "/", headers=BROWSER_MARKS,
                        timeout=30).status_code == 401


@pytest.mark.integration
def test_the_cli_shows_a_one_time_link_and_never_the_key(folder):
    done = subprocess.run([str(Path(sys.executable).with_name("mlflow-magic")), "start",
                           "--path", str(folder)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    key = keys.folder_key(folder)
    assert key not in done.stdout and "mlflow_magic_login=" in done.stdout
    link = next(w for w in done.stdout.split() if "mlflow_magic_login=" in w)
    assert requests.get(link, timeout=30).status_code == 200

