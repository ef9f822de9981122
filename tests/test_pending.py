"""A start that finishes in the background: MLflow calls wait for it, or get its error.

The waiting and the hand-over of errors are checked on plain threads and on the
stub server (milliseconds); the notebook experience in a real ipykernel on a
real MLflow server: the cell returns before the server answers, the next
cell's first MLflow call logs a run without a refused connection, and a failed
start shows its own message in that call.
"""

from __future__ import annotations

import os
import re
import threading
import time
from importlib.metadata import entry_points

import pytest
from conftest import STUB, Kernel, python, stub_at, stubs_running, wait_for

import mlflow_magic
from mlflow_magic.errors import ConfigError, StartFailedError
from mlflow_magic.lifecycle import pending
from mlflow_magic.remote import rest
from mlflow_magic.results import Launched, Reused, Starting
from mlflow_magic.state import processes, records

URL = "http://127.0.0.1:5999"


@pytest.fixture(autouse=True)
def _no_pending_start_leaks():
    yield
    pending.forget()


def started(work) -> pending.PendingStart:
    return pending.PendingStart(work).begin()


@pytest.mark.integration
def test_mlflow_finds_the_waiting_point_through_its_entry_point():
    names = {ep.value for ep in entry_points(group="mlflow.request_header_provider")}
    assert "mlflow_magic.hook:RequestHook" in names
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    from mlflow_magic.hook import RequestHook

    assert any(isinstance(p, RequestHook) for p in _request_header_provider_registry)


def test_waiters_are_released_after_the_done_callbacks():
    release, order = threading.Event(), []

    def work(on_url):
        on_url(URL)
        release.wait(10)
        return "result"

    start = started(work)
    assert start.wait_for_url(10) and start.url == URL and not start.done
    pending.track(start, 60)
    start.add_done_callback(lambda result, error: order.append(("callback", result, error)))
    waiter = threading.Thread(target=lambda: (pending.wait_for_server(),
                                              order.append(("waiter",))))
    waiter.start()
    time.sleep(0.2)
    assert order == []  # still waiting for the start
    release.set()
    waiter.join(10)
    assert order == [("callback", "result", None), ("waiter",)]
    assert pending._current is None  # a finished start costs later requests nothing
    seen = []
    start.add_done_callback(lambda result, error: seen.append(result))  # after the end: now
    assert seen == ["result"]


def test_a_failed_start_fails_the_main_threads_mlflow_calls_with_its_message():
    def work(on_url):
        on_url(URL)
        raise StartFailedError("The MLflow server exited with code 2. Fix the flags.")

    start = started(work)
    pending.track(start, 60)
    with pytest.raises(pending.ServerStartFailed) as info:
        pending.wait_for_server(lambda: URL + "/")
    assert str(info.value) == (f"This MLflow call needs the server at {URL}, and its start "
                               "failed: The MLflow server exited with code 2. Fix the flags.")
    assert info.value._render_traceback_() == [str(info.value)]  # IPython: no stack
    assert not isinstance(info.value, Exception)  # MLflow logs and drops an Exception here
    # MLflow's own threads (async logging, trace export) are not interrupted ...
    other = []
    worker = threading.Thread(target=lambda: other.append(pending.wait_for_server(lambda: URL)))
    worker.start()
    worker.join(10)
    assert other == [None]
    # ... nor calls to another server, nor anything once the start is forgotten.
    pending.wait_for_server(lambda: "http://127.0.0.1:5000")
    pending.forget()
    pending.wait_for_server(lambda: URL)


def test_a_call_made_for_an_address_the_start_gave_up_is_not_sent():
    """The start's first port was taken by another program meanwhile; it moved on. A call
    already waiting was made for the old address, where that program answers now."""
    moved, release = "http://127.0.0.1:6001", threading.Event()

    def work(on_url):
        on_url(URL)
        release.wait(10)
        on_url(moved)  # the retry on the next port
        return "result"

    start = started(work)
    start.wait_for_url(10)
    pending.track(start, 60)
    outcomes = []

    def call():
        try:
            pending.wait_for_server(lambda: URL)
            outcomes.append("sent")
        except pending.ServerMoved as exc:
            outcomes.append(str(exc))

    waiter = threading.Thread(target=call)  # any thread: never into another's server
    waiter.start()
    time.sleep(0.2)
    release.set()
    waiter.join(10)
    assert outcomes == [f"This MLflow call was made for {URL}, but another program took that "
                        f"port while the MLflow server was starting, so the server started at "
                        f"{moved} instead. The call was not sent. Run it again: MLflow now uses "
                        f"{moved}."]
    pending.wait_for_server(lambda: moved)  # the calls made from now on go through


def test_a_background_start_that_loses_its_port_moves_and_stops_the_waiting_call(
        folder, stub, clean_tracking_env):
    """A web server that cannot take the socket the start holds binds for itself (MLflow's
    waitress launch): if another program takes the port in that moment, the start moves."""
    stub("binds-itself:1")  # ours lets go of the port, binds a second later ...
    result = mlflow_magic.start(folder, wait=False)
    taken = int(result.url.rsplit(":", 1)[1])
    # ... another program binds first (another user's server starting at the same moment)
    wait_for(lambda: processes.port_is_free("127.0.0.1", taken))
    with stub_at(taken) as other:
        waiting = []  # a call of this process, made for the old address, waiting meanwhile

        def call():
            try:
                pending.wait_for_server(lambda: result.url)
                waiting.append("sent")
            except pending.ServerMoved as exc:
                waiting.append(str(exc))

        caller = threading.Thread(target=call)
        caller.start()
        # A script started meanwhile (`!python train.py`) was pointed at the old address too.
        script = python("""
            import os
            from mlflow_magic.lifecycle import pending
            try:
                pending.wait_for_server(lambda: os.environ["MLFLOW_TRACKING_URI"])
                print("sent")
            except pending.ServerMoved as exc:
                print(exc)
        """)
        assert "The call was not sent" in script.stdout, script.stderr
        caller.join(30)
        assert len(waiting) == 1 and "The call was not sent" in waiting[0]
        final = result.pending.result(0)
        assert final.url != result.url and os.environ["MLFLOW_TRACKING_URI"] == final.url
        pending.wait_for_server(lambda: os.environ["MLFLOW_TRACKING_URI"])  # goes through
        assert records.read_record(folder).url == final.url
        mlflow_magic.stop(folder)
        assert other.poll() is None  # the other program's server is not ours to stop


def test_an_error_before_the_url_is_raised_at_once(folder):
    with pytest.raises(ConfigError, match="65535"):
        mlflow_magic.start(folder, port=70000, wait=False)
    assert pending._current is None and not folder.exists()


def test_a_background_start_on_the_stub(folder, stub, clean_tracking_env):
    stub("slow:1.5")
    result = mlflow_magic.start(folder, wait=False)
    assert isinstance(result, Starting)
    assert os.environ["MLFLOW_TRACKING_URI"] == result.url  # set at once
    assert not rest.probe(result.url, timeout=0.5).answering  # and the server still starting
    assert mlflow_magic.status(folder).state == "starting"
    # A script started now (`!python train.py`) waits for the server as the kernel does.
    script = python("""
        import os, urllib.request
        from mlflow_magic.lifecycle import pending
        pending.wait_for_server(lambda: os.environ["MLFLOW_TRACKING_URI"])
        print(urllib.request.urlopen(os.environ["MLFLOW_TRACKING_URI"] + "/health").status)
    """)
    assert script.stdout.strip() == "200", script.stderr
    pending.wait_for_server()  # what an MLflow call does first
    assert rest.probe(result.url).answering
    assert pending.STARTING_ENV not in os.environ  # scripts started from now on do not wait
    final = result.pending.result(0)
    assert isinstance(final, Launched) and final.url == result.url
    assert records.read_record(folder).pid == final.server.pid
    mlflow_magic.stop(folder)


def test_a_kernel_killed_during_a_background_start_leaves_a_server_the_next_start_reuses(
        folder, stub):
    stub("slow:2")
    died = python(f"""
        import os, sys, mlflow_magic
        from mlflow_magic.lifecycle import launch
        launch.server_argv = lambda config, port: [sys.executable, {str(STUB)!r}, "--port",
                                                    str(port)]
        starting = mlflow_magic.start({str(folder)!r}, wait=False)
        print(starting.url, flush=True)
        os._exit(9)  # as a SIGKILL of the kernel: no thread finishes the start
    """)
    url = died.stdout.strip()
    assert url.startswith("http://127.0.0.1:"), died.stderr
    record = records.read_record(folder)
    assert record is not None and record.url == url and not record.mlflow_version
    assert mlflow_magic.status(folder).state in ("starting", "running")  # never "unresponsive"
    again = mlflow_magic.start(folder, use=False)  # waits for that server: no second one
    assert isinstance(again, Reused) and again.server.pid == record.pid
    assert records.read_record(folder).mlflow_version == "0.0-stub"
    mlflow_magic.stop(folder)
    assert stubs_running() == []


def test_a_background_start_that_fails_leaves_nothing(folder, stub, clean_tracking_env):
    stub("exit:2:Error: No such option: --bogus\nUsage: mlflow server [OPTIONS]")
    result = mlflow_magic.start(folder, wait=False)
    with pytest.raises(pending.ServerStartFailed, match=r"exited with code 2.*after `--`"):
        pending.wait_for_server(lambda: result.url)
    assert records.read_record(folder) is None and stubs_running() == []
    # Starting again (here: blocking) replaces the failed start for this process.
    stub("serve")
    mlflow_magic.start(folder)
    pending.wait_for_server(lambda: os.environ["MLFLOW_TRACKING_URI"])
    mlflow_magic.stop(folder)


@pytest.mark.integration
def test_a_script_started_during_a_start_that_then_failed_stops_waiting(folder):
    """The record is gone for good: the script's MLflow call goes ahead and fails on its own,
    instead of waiting out the start's whole timeout (an hour here)."""
    script = python("""
        import os
        from mlflow_magic.lifecycle import pending
        pending.wait_for_server(lambda: os.environ["MLFLOW_TRACKING_URI"])
        print("went ahead")
    """, env={"MLFLOW_TRACKING_URI": URL,
              pending.STARTING_ENV: f"{URL} {time.time() + 3600:.0f} {folder}"})
    assert script.stdout.strip() == "went ahead", script.stderr


# --- in a real kernel, on a real MLflow server ---------------------------------------------


@pytest.fixture
def kernel(tmp_path):
    k = Kernel({"MLFLOW_PATH": str(tmp_path / "mlflow_data")})
    try:
        yield k
    finally:
        k.close()
        for data_dir in (tmp_path / "mlflow_data", tmp_path / "bad"):
            mlflow_magic.stop(data_dir)  # only this test's: session servers stay


def test_the_start_cell_returns_at_once_and_the_next_cell_logs_a_run(kernel, tmp_path):
    out, errors = kernel.run("%load_ext mlflow_magic\n%mlflow_server start\n"
                             "import os; print(os.environ['MLFLOW_TRACKING_URI'])")
    assert errors == []
    assert re.findall(r"http://127\.0\.0\.1:\d+", out)  # the address, at once
    assert "Starting MLflow server at" in out
    # The cell did not wait for the server (IPython 9 counts cells at their start, which once
    # made the start's own cell wait for the whole start).
    assert mlflow_magic.status(tmp_path / "mlflow_data").state == "starting"
    out, errors = kernel.run(
        "import mlflow\nwith mlflow.start_run() as run:\n    mlflow.log_param('alpha', 0.5)\n"
        "print(mlflow.get_run(run.info.run_id).info.status)")
    assert errors == [] and out.strip().splitlines()[-1] == "FINISHED"
    assert "Connection refused" not in out and "Retrying" not in out
    # The start cell's own output turned into the result and the inline UI, in place.
    assert any("Started MLflow server at" in v and ("mlflow-magic-ui" in v or "not embedded" in v)
               and "ready in" in v for v in kernel.shown)
    assert not [v for v in kernel.shown if "HBox(" in v or "IntProgress(" in v]


def test_a_failed_background_start_shows_its_message_in_the_next_mlflow_call(kernel, tmp_path):
    out, errors = kernel.run(f"%load_ext mlflow_magic\n%mlflow_server start --path "
                             f"{tmp_path / 'bad'} -- --bogus-flag")
    assert errors == [] and "Starting MLflow server at" in out
    out, errors = kernel.run("import mlflow\nmlflow.search_experiments()")
    assert len(errors) == 1
    assert errors[0]["ename"] == "ServerStartFailed"
    (message,) = errors[0]["traceback"]  # one paragraph, no stack
    assert "its start failed" in message and "--bogus-flag" in message
    assert any("exited with code 2" in v for v in kernel.shown)  # the start's cell
    assert any("failed after" in v for v in kernel.shown)
    out, errors = kernel.run("print('the kernel goes on')")
    assert errors == [] and "the kernel goes on" in out


@pytest.mark.integration
def test_three_kernels_starting_fresh_folders_at_once_lose_no_first_call(tmp_path):
    """Run All in three kernels at the same moment, twice: each start shows its address at
    once, serves exactly there, and the first MLflow call queued behind it goes through."""
    kernels = [Kernel({}) for _ in range(3)]
    folders: list = []
    try:
        for round_ in range(2):
            these = [tmp_path / f"round{round_}-kernel{i}" for i in range(3)]
            folders += these
            barrier, results = threading.Barrier(3), [None] * 3

            def run_all(i: int, these=these, barrier=barrier, results=results) -> None:
                barrier.wait()
                start = kernels[i].run(f"%load_ext mlflow_magic\n%mlflow_server start --no-ui "
                                       f"--path {these[i]}\nimport os\n"
                                       "print('\\nURL', os.environ['MLFLOW_TRACKING_URI'])")
                first = kernels[i].run("import mlflow\nmlflow.set_experiment('first-call')\n"
                                       "with mlflow.start_run() as run:\n"
                                       "    mlflow.log_param('kernel', 1)\n"
                                       "print('RUN', mlflow.get_tracking_uri(), "
                                       "mlflow.get_run(run.info.run_id).info.status)")
                results[i] = (start, first)

            threads = [threading.Thread(target=run_all, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            urls = []
            for i, ((shown, start_errors), (first, first_errors)) in enumerate(results):
                assert start_errors == [] and first_errors == [], (start_errors, first_errors)
                url = shown.split("URL ")[-1].strip()
                assert f"RUN {url} FINISHED" in first, first
                assert records.read_record(these[i]).url == url  # served where it was shown
                urls.append(url)
            assert len(set(urls)) == 3
    finally:
        for k in kernels:
            k.close()
        for folder in folders:
            mlflow_magic.stop(folder)
