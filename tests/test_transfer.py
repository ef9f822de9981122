"""transfer.py and ``push --to URL``: a laptop folder copied to a team server (PostgreSQL, S3,
a login).

The source is a SQLite folder made as a user makes it (tests/push_data.py: 15 runs, 500-point
metric histories, nested runs, a 20 MB artifact, a dataset input, a registered model with two
versions and an alias, logged models, a trace). Each target is a fresh team server: its own
PostgreSQL database, artifacts in SeaweedFS's S3, MLflow's basic-auth login. What is checked
is read back from the target with MLflow's own client, not from the push's report. The pure
helpers (order of runs, how points compare, sources of model versions, progress) come first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ADMIN_PASSWORD, free_port, wait_for

import mlflow_magic
from mlflow_magic.contract import PUSH_SOURCE_TAG
from mlflow_magic.remote import transfer
from mlflow_magic.remote.transfer import copying, reading
from mlflow_magic.tracking import TRACKING_ENV, environment

DATA = Path(__file__).with_name("push_data.py")
#: Runs in the laptop folder: enough for a push to be killed between runs (5 are nested).
RUNS = 15


@pytest.fixture(scope="module")
def laptop(tmp_path_factory):
    """The laptop folder, with its data; its server is stopped at the end."""
    folder = tmp_path_factory.mktemp("laptop") / "mlflow_data"
    server = mlflow_magic.start(folder, use=False).server
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    made = subprocess.run([sys.executable, str(DATA), server.url, "--runs", str(RUNS)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    yield folder, json.loads(made.stdout.strip().splitlines()[-1])
    mlflow_magic.stop(folder)


# --- pure logic ------------------------------------------------------------------------------


def fake_run(run_id: str, parent: str | None = None) -> SimpleNamespace:
    """What the ordering reads of a run (importing MLflow's entities starts a process)."""
    tags = {"mlflow.parentRunId": parent} if parent else {}
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(tags=tags))


def point(value: float, timestamp: int, step: int) -> SimpleNamespace:
    return SimpleNamespace(key="m", value=value, timestamp=timestamp, step=step)


def test_parents_come_before_the_runs_nested_in_them_whatever_the_order_found():
    runs = [fake_run("grandchild", "child"), fake_run("child", "root"), fake_run("root"),
            fake_run("orphan", "not-pushed")]
    order = [r.info.run_id for r in reading.parents_first(runs)]
    assert order.index("root") < order.index("child") < order.index("grandchild")
    assert sorted(order) == ["child", "grandchild", "orphan", "root"]


def test_metric_points_compare_by_step_time_and_value_with_nan_equal_to_nan():
    nan_a, nan_b = point(float("nan"), 5, 1), point(float("nan"), 5, 1)
    assert reading.point(nan_a) == reading.point(nan_b)
    assert reading.point(point(1.0, 5, 1)) != reading.point(point(1.0, 6, 1))
    assert reading.point(point(1.0, 5, 1)) != reading.point(point(1.0, 5, 2))
    assert Counter([reading.point(nan_a)]) == Counter([reading.point(nan_b)])


def test_a_versions_source_points_at_the_copied_model_or_run():
    found = transfer.Plan(run_ids={"r1": "t1"}, model_ids={"m-abc": "m-xyz"})
    version = SimpleNamespace(source="models:/m-abc", run_id="r1")
    assert copying._version_source(version, found, None) == "models:/m-xyz"
    version = SimpleNamespace(source="runs:/r1/model", run_id="r1")
    assert copying._version_source(version, found, None) == "runs:/t1/model"
    version = SimpleNamespace(source="s3://elsewhere/model", run_id=None)
    assert copying._version_source(version, found, None) == "s3://elsewhere/model"


def test_the_plans_line_names_only_what_is_missing():
    run = transfer.RunPlan(fake_run("r1"), "exp", None, None)
    run.points = [point(1.0, 5, 1), point(2.0, 6, 2)]
    run.artifacts = [("model.pkl", 2_000_000)]
    assert transfer.Plan(runs=[run]).summary() == (
        "1 run (1 new), 2 metric points, 1 artifact (2.0 MB)")
    version = transfer.RegisteredPlan(SimpleNamespace(name="clf"), True, versions=[object()])
    assert transfer.Plan(registered=[version]).summary() == (
        "1 model version of 1 registered model")  # not "0 runs, 0 metric points, ..."
    empty = transfer.ExperimentPlan("exp", "1", None)
    assert transfer.Plan(experiments=[empty]).summary() == "1 experiment"
    assert transfer.Plan().summary() == "nothing"


def test_progress_says_runs_points_bytes_a_rate_and_the_time_left():
    tally = transfer.Tally(runs=30, points=15_000, bytes=20_000_000)
    assert "time left: measuring" in tally.text()
    tally.started -= 10
    tally.runs_done, tally.points_done, tally.bytes_done = 15, 7_500, 10_000_000
    line = tally.text()
    assert "runs 15/30" in line and "7,500/15,000" in line and "10.0 MB/20.0 MB" in line
    assert "1.5 runs/s" in line and "750 points/s" in line and "s left" in line
    assert 0.45 < tally.fraction < 0.55


def test_the_notebook_progress_is_plain_html_replaced_in_place_then_by_the_report():
    from mlflow_magic.notebook.progress import PushProgress
    from mlflow_magic.results import Pushed

    shown = []

    class Handle:
        def update(self, bundle, raw):
            shown.append(bundle)

    def display(bundle, raw, display_id):
        shown.append(bundle)
        return Handle()

    progress = PushProgress(display)
    tally = transfer.Tally(runs=2, points=10, bytes=0)
    progress(tally)
    progress(tally)  # within half a second: not redrawn
    tally.phase = "done"
    progress(tally)
    progress.show(Pushed("/d", "http://team", False, "2 runs", False, seconds=1.0))
    assert len(shown) == 3
    assert "<code>runs: runs 0/2" in shown[0]["text/html"] and "HBox" not in str(shown)
    assert shown[-1]["text/plain"].startswith("Pushed /d to http://team in")


def test_the_terminal_line_is_rewritten_in_place_and_ends_with_a_newline():
    import io

    from mlflow_magic.front.terminal import PushLine

    out = io.StringIO()
    line = PushLine(out)
    tally = transfer.Tally(runs=3, points=30, bytes=0)
    line(tally)
    line(tally)  # within half a second: not rewritten
    tally.phase, tally.runs_done = "done", 3
    line(tally)
    written = out.getvalue()
    assert written.count("\r\033[K") == 2 and written.endswith("\n")
    assert "runs 3/3" in written.rsplit("\r", 1)[1]


# --- on real servers ---------------------------------------------------------------------


def client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(url)


def pushed_runs(url: str, experiment: str) -> list:
    exp = client(url).get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client(url).search_runs([exp.experiment_id], max_results=1000)


@contextlib.contextmanager
def mlflow_tracking(url: str):
    """MLflow's fluent API pointed at ``url`` for a moment (to load a model as users do)."""
    import mlflow

    with environment(TRACKING_ENV):
        mlflow.set_tracking_uri(url)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_push_killed_midway_resumes_then_everything_is_there_once_and_verified(
        laptop, team, tmp_path):
    folder, made = laptop
    source_url = mlflow_magic.status(folder).server.url
    src, dst = client(source_url), client(team)

    planned = mlflow_magic.push(folder, to=team, dry_run=True,
                                experiments=[made["experiment"]])
    assert f"would copy {RUNS} runs ({RUNS} new)" in str(planned) and "MB)" in str(planned)
    assert dst.get_experiment_by_name(made["experiment"]) is None  # a dry run copies nothing

    argv = [sys.executable, "-m", "mlflow_magic.cli", "push", "--to", team,
            "--path", str(folder), "--experiment", made["experiment"]]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:  # killed once some runs are whole and others are not
        wait_for(lambda: first.poll() is not None or sum(
            r.info.status == "FINISHED" for r in pushed_runs(team, made["experiment"])) >= 3,
            timeout=400, interval=0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL, "the push ended before it could be killed"
    assert 3 <= len(pushed_runs(team, made["experiment"])) <= RUNS

    report = mlflow_magic.push(folder, to=team, experiments=[made["experiment"]])
    text = str(report)
    assert text.startswith(f"Pushed {folder} to {team}"), text
    assert f"Verified: {RUNS} runs" in text and "artifact checksums equal" in text
    assert ADMIN_PASSWORD not in text + report.html()

    # Read back from the team server: every run once, equal to its source.
    runs = pushed_runs(team, made["experiment"])
    assert Counter(r.data.tags[PUSH_SOURCE_TAG] for r in runs) == Counter(made["runs"])
    by_source = {r.data.tags[PUSH_SOURCE_TAG]: r for r in runs}
    sources = {r.info.run_id: r for r in pushed_runs(source_url, made["experiment"])}
    for source_id, copy in by_source.items():
        original = sources[source_id]
        assert copy.data.params == original.data.params
        assert (copy.info.start_time, copy.info.end_time, copy.info.status, copy.info.run_name
                ) == (original.info.start_time, original.info.end_time,
                      original.info.status, original.info.run_name)
    last = made["runs"][-1]
    for key in sources[last].data.metrics:
        ours = sorted((m.step, m.timestamp, m.value) for m in src.get_metric_history(last, key))
        theirs = sorted((m.step, m.timestamp, m.value)
                        for m in dst.get_metric_history(by_source[last].info.run_id, key))
        assert ours == theirs and len(theirs) == 500, key
    # nested runs under the parent's copy
    parent_copy = by_source[made["parent"]].info.run_id
    assert sum(r.data.tags.get("mlflow.parentRunId") == parent_copy for r in runs) == 5
    # the 20 MB artifact, byte for byte, through the team server into S3
    big = by_source[made["big"]]
    assert sha256(dst.download_artifacts(big.info.run_id, "checkpoints/weights.bin",
                                         str(tmp_path))) == sha256(
        src.download_artifacts(made["big"], "checkpoints/weights.bin", str(tmp_path / "s")))
    assert [d.dataset.name for d in big.inputs.dataset_inputs] == ["iris-like"]
    # the registered model: two versions from the copied runs, the alias, tags, description
    model = dst.get_registered_model("laptop-classifier")
    assert model.description == "from the laptop" and model.tags["owner"] == "vision"
    assert len(dst.search_model_versions("name='laptop-classifier'")) == 2
    champion = dst.get_model_version_by_alias("laptop-classifier", "champion")
    source_champion = src.get_model_version_by_alias("laptop-classifier", "champion")
    assert champion.run_id == by_source[source_champion.run_id].info.run_id
    # the logged models, with their files, linked to the copied runs; the model loads
    experiment_id = dst.get_experiment_by_name(made["experiment"]).experiment_id
    models = dst.search_logged_models([experiment_id])
    assert len(models) == 2
    assert {m.source_run_id for m in models} <= {r.info.run_id for r in runs}
    import mlflow

    with mlflow_tracking(team):
        loaded = mlflow.sklearn.load_model("models:/laptop-classifier@champion")
    assert loaded.predict([[0.1]]).shape == (1,)
    # the trace, spans and all
    traces = dst.search_traces(locations=[experiment_id])
    assert len(traces) == 1
    assert sorted(s.name for s in traces[0].data.spans) == ["features", "predict"]

    again = mlflow_magic.push(folder, to=team, experiments=[made["experiment"]])
    assert str(again).startswith("Nothing to copy"), str(again)
    assert f"Verified: {RUNS} runs" in str(again)

    # A finished run changed here after the push (a point at an earlier step, which its
    # latest values do not show, and a new file): the next push finds it, and only it.
    changed = made["runs"][0]
    key = sorted(sources[changed].data.metrics)[0]
    src.log_metric(changed, key, 0.25, timestamp=1, step=-1)
    late = tmp_path / "late.txt"
    late.write_text("evaluated later")
    src.log_artifact(changed, str(late))
    third = mlflow_magic.push(folder, to=team, experiments=[made["experiment"]])
    assert "1 run (0 new, 1 to finish)" in str(third) and "1 artifact" in str(third), str(third)
    copy_id = by_source[changed].info.run_id
    assert (-1, 1, 0.25) in {(m.step, m.timestamp, m.value)
                             for m in dst.get_metric_history(copy_id, key)}
    assert "late.txt" in [f.path for f in dst.list_artifacts(copy_id)]
    assert str(mlflow_magic.push(folder, to=team, experiments=[made["experiment"]])
               ).startswith("Nothing to copy")
    assert len(pushed_runs(team, made["experiment"])) == RUNS
    assert len(dst.search_model_versions("name='laptop-classifier'")) == 2
    assert len(dst.search_traces(locations=[experiment_id])) == 1


@pytest.mark.integration
def test_a_push_into_an_experiment_the_team_already_has_merges_and_says_so(laptop, team):
    folder, made = laptop
    dst = client(team)
    theirs = dst.create_experiment(made["shared"])
    dst.create_run(theirs, run_name="a-colleagues-run")
    report = mlflow_magic.push(folder, to=team, experiments=[made["shared"]])
    assert (f"Experiment '{made['shared']}' already exists there with 1 other run: this "
            "folder's runs were merged into it.") in str(report), str(report)
    runs = pushed_runs(team, made["shared"])
    assert len(runs) == 3
    assert sorted(r.info.run_name for r in runs) == ["a-colleagues-run", "baseline-0",
                                                     "baseline-1"]
    assert dst.get_experiment_by_name(made["experiment"]) is None  # only what was named


@pytest.mark.integration
def test_a_wrong_password_or_no_server_is_one_paragraph_and_copies_nothing(
        laptop, team, monkeypatch, ip):
    folder, made = laptop
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(mlflow_magic.MlflowMagicError) as info:
        mlflow_magic.push(folder, to=team)
    message = str(info.value)
    assert "refused the user name or password" in message and "push again" in message
    assert "not-the-password" not in message and "\n" not in message
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    assert client(team).get_experiment_by_name(made["experiment"]) is None

    nowhere = f"http://127.0.0.1:{free_port()}"
    cli = subprocess.run([sys.executable, "-m", "mlflow_magic.cli", "push", "--to", nowhere,
                          "--path", str(folder)], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1
    assert "No MLflow tracking server answers" in cli.stderr and "Traceback" not in cli.stderr

    with pytest.raises(Exception) as magic:  # UsageError: IPython shows the message alone
        ip.run_line_magic("mlflow_server", f"push --to ftp://{nowhere[7:]} --path {folder}")
    assert type(magic.value).__name__ == "UsageError"
    assert "is not the address of a tracking server" in str(magic.value)
    with pytest.raises(Exception, match="No experiment named 'nope'"):
        ip.run_line_magic("mlflow_server", f"push --to {team} --path {folder} --experiment nope")
    assert client(team).get_experiment_by_name(made["experiment"]) is None


@pytest.mark.integration
def test_the_folders_server_counts_and_lists_each_run_as_mlflows_api_reads_it(laptop, team):
    """What a push's digest reads in one request equals what MLflow's API gives run by run,
    so a push that uses it decides exactly as one that reads everything; a server of MLflow's
    auth app does not serve it (its permissions are per experiment), and a push reads that
    one through the API."""
    folder, made = laptop
    src = client(mlflow_magic.status(folder).server.url)
    experiment = src.get_experiment_by_name(made["experiment"]).experiment_id
    runs = reading.runs_of(src, experiment)
    told = reading.run_summaries(src, experiment)
    assert told is not None and set(told) == {r.info.run_id for r in runs}
    histories = reading.histories(src, runs)
    for run in runs:
        points, files = told[run.info.run_id]
        assert points == reading.counts(run, histories), run.info.run_name
        assert files == sorted(reading.files_of(src, run)), run.info.run_name
    # every point the module's runs logged (an earlier test may have added one since)
    assert sum(sum(p.values()) for p, _ in told.values()) == sum(
        len(points) for points in histories.values()) >= 10 * 1000 + 5
    assert ("checkpoints/weights.bin", 20_000_000) in told[made["big"]][1]
    assert reading.run_summaries(src, "no-such-experiment") is None
    assert reading.run_summaries(client(team), "0") is None


@pytest.mark.integration
def test_bulk_histories_keep_the_runs_a_cut_answer_holds_whole(laptop, monkeypatch):
    """An answer cut at its cap still holds every run before the one it cut in: only the
    rest is asked again (halving the request threw the whole answer away). A run longer than
    the cap by itself is read with MLflow's own paged call."""
    from mlflow_magic import internals

    folder, _made = laptop
    src = client(mlflow_magic.status(folder).server.url)
    runs = [r for r in reading.runs_of(src, src.get_experiment_by_name(
        "laptop-experiments").experiment_id) if "loss" in r.data.metrics
        and "acc" in r.data.metrics]
    assert len(runs) == 10  # 500 points of each key (an earlier test adds one to an "acc")
    asked: list[int] = []
    real = internals.metric_histories

    def counted(uri, run_ids, key):
        asked.append(len(run_ids))
        return real(uri, run_ids, key)

    monkeypatch.setattr(internals, "metric_histories", counted)
    monkeypatch.setattr(internals, "_HISTORY_BULK_MAX", 1200)  # two runs and a bit
    found: dict = {}
    reading.fetch_histories(src, "loss", [r.info.run_id for r in runs], found)
    assert asked == [10, 8, 6, 4, 2]
    for run in runs:
        expected = sorted((m.step, m.timestamp, m.value)
                          for m in src.get_metric_history(run.info.run_id, "loss"))
        assert sorted((m.step, m.timestamp, m.value)
                      for m in found[(run.info.run_id, "loss")]) == expected
        assert len(expected) == 500
    monkeypatch.setattr(internals, "_HISTORY_BULK_MAX", 300)  # less than one run
    alone: dict = {}
    reading.fetch_histories(src, "acc", [runs[0].info.run_id], alone)
    assert len(alone[(runs[0].info.run_id, "acc")]) == len(
        src.get_metric_history(runs[0].info.run_id, "acc")) >= 500


@pytest.mark.integration
def test_artifacts_stream_from_server_to_server_byte_for_byte(laptop, team, tmp_path):
    """Files go from the folder's server to the team server's S3 as one stream each way:
    an empty file, a name with a space, a file in a folder; a store that is not proxied by
    its server is left to MLflow's client."""
    from mlflow_magic import internals

    folder, _made = laptop
    src, dst = client(mlflow_magic.status(folder).server.url), client(team)
    files = {"empty.txt": b"", "with space.csv": b"a,b\n1,2\n",
             "deep/er/blob.bin": os.urandom(3_000_000)}
    for name, data in files.items():
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(data)
    run = src.create_run(src.create_experiment("streamed")).info
    src.log_artifacts(run.run_id, str(tmp_path / "src"))
    copy = dst.create_run(dst.create_experiment("streamed")).info
    for name in files:
        assert internals.stream_artifact(src.tracking_uri, run.artifact_uri, dst.tracking_uri,
                                         copy.artifact_uri, name), name
    assert copy.artifact_uri.startswith("mlflow-artifacts:")
    for name, data in files.items():
        local = dst.download_artifacts(copy.run_id, name, str(tmp_path / "back"))
        assert Path(local).read_bytes() == data, name
    assert not internals.stream_artifact(src.tracking_uri, run.artifact_uri, dst.tracking_uri,
                                         f"file://{tmp_path}/elsewhere", "empty.txt")
