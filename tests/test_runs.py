"""The run card you look at: charts as static SVG, live while the cell runs, runs compared."""

from __future__ import annotations

import re
import time

import pytest
from conftest import Kernel

import mlflow_magic
from mlflow_magic.errors import ConfigError
from mlflow_magic.notebook import charts


def test_a_long_history_is_cut_down_keeping_its_extremes_and_last_value():
    points = [(float(s), float((s * 7919) % 1000)) for s in range(10_000)]
    points[4321] = (4321.0, -50.0)  # a spike
    kept = charts.downsample(points)
    assert len(kept) <= 2 * charts.BUCKETS + 1
    assert (4321.0, -50.0) in kept and kept[-1] == points[-1]
    assert [p[0] for p in kept] == sorted(p[0] for p in kept)
    assert charts.downsample([(0.0, float("nan")), (1.0, 2.0)]) == [(1.0, 2.0)]


def test_a_chart_is_static_svg_with_the_last_value_and_range():
    svg = charts.line_chart("loss", [charts.Series("run", [(0, 1.0), (1, 0.5), (2, 0.25)])])
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<script" not in svg
    assert "<title>loss</title>" in svg and "last 0.25" in svg and "min 0.25" in svg
    assert "max 1" in svg and "step 0" in svg
    assert svg.count("<polyline") == 1
    overlaid = charts.line_chart("loss", [charts.Series("a", [(0, 1.0)], charts.PALETTE[0]),
                                          charts.Series("b", [(0, 2.0), (5, 3.0)],
                                                        charts.PALETTE[1])])
    assert overlaid.count("<polyline") == 2 and "last" not in overlaid
    assert "no values yet" in charts.line_chart("loss", [])


@pytest.fixture
def kernel(shared_server, tmp_path):
    k = Kernel({"MLFLOW_TRACKING_URI": shared_server.url})
    try:
        yield k
    finally:
        k.close()


def test_the_card_updates_live_while_the_cell_runs_and_ends_static(kernel):
    cell = ("%%mlflow_run --experiment live-cards --name six-seconds\n"
            "import time, mlflow\n"
            "for step in range(30):\n"
            "    mlflow.log_metric('loss', 1 / (step + 1), step=step)\n"
            "    with mlflow.start_run(run_name=f'fold-{step // 10}', nested=True)"
            " if step % 10 == 0 else __import__('contextlib').nullcontext():\n"
            "        pass\n"
            "    time.sleep(0.2)")
    kernel.run("%load_ext mlflow_magic")
    began = time.monotonic()
    seen: list[tuple[float, str]] = []
    kernel.shown_hook = lambda html: seen.append((time.monotonic() - began, html))
    _, errors = kernel.run(cell)
    ended = time.monotonic() - began
    assert errors == []
    cards = [(t, html) for t, html in seen if "MLflow run six-seconds" in html]
    running = [(t, html) for t, html in cards if "RUNNING" in html and t < ended]
    values = {m.group(1) for _, html in running
              if (m := re.search(r"metric loss</th><td[^>]*>([^<]+)<", html))}
    assert len(running) >= 3 and len(values) >= 2, [t for t, _ in running]  # redrawn, changed
    final = cards[-1][1]
    assert "FINISHED" in final and "<svg" in final and "last 0.03333" in final
    assert all(f"fold-{i}" in final for i in range(3))  # the nested runs, as rows


def test_compare_overlays_runs_with_a_legend(shared_server, clean_tracking_env, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_server.url)
    mlflow.set_tracking_uri(shared_server.url)
    mlflow.set_experiment("compared")
    ids = []
    for rate in (0.1, 0.5):
        with mlflow.start_run(run_name=f"lr-{rate}") as run:
            for step in range(20):
                mlflow.log_metric("loss", 1 / (1 + rate * step), step=step)
            mlflow.log_metric("final", rate)
        ids.append(run.info.run_id)
    by_experiment = mlflow_magic.compare("compared", metrics=["loss"])
    page = by_experiment._repr_html_()
    assert page.count("<polyline") == 2 and "lr-0.1" in page and "lr-0.5" in page
    assert "lr-0.5" in str(by_experiment) and "loss" in str(by_experiment)
    by_ids = mlflow_magic.compare(ids)
    assert set(by_ids.charts) == {"loss", "final"}
    with pytest.raises(ConfigError, match="has the metric 'accuracy'"):
        mlflow_magic.compare(ids, metrics=["accuracy"])
    with pytest.raises(ConfigError, match="no experiment 'nowhere'"):
        mlflow_magic.compare("nowhere")
