"""A laptop folder's worth of MLflow data, made as a user makes it, to push (tests, benchmarks).

``python tests/push_data.py URL --runs 30 --points 500 --big-mb 20`` logs, to the tracking
server at URL: runs with params and tags, two metrics of ``--points`` points each, five runs
nested under a parent, small artifacts on every run and one of ``--big-mb`` MB, a dataset
input, a scikit-learn model logged twice to a registered model (two versions, the second with
the alias ``champion``), which makes MLflow 3 logged models, and a traced function call; and
two runs in a second experiment, ``baselines``. It prints a JSON summary of what it made.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

EXPERIMENT = "laptop-experiments"
SHARED = "baselines"
NESTED = 5


def build(runs: int, points: int, big_mb: int) -> dict:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from sklearn.linear_model import LogisticRegression

    client = MlflowClient()
    mlflow.set_experiment(EXPERIMENT)
    client.set_experiment_tag(mlflow.get_experiment_by_name(EXPERIMENT).experiment_id,
                              "mlflow.note.content", "Experiments from the laptop")
    made: dict = {"runs": [], "big": None}
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x": rng.normal(size=40), "y": rng.integers(0, 2, size=40)})
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs - NESTED):
            with mlflow.start_run(run_name=f"trial-{i}") as run:
                run_id = run.info.run_id
                mlflow.log_params({"lr": 10 ** -(i % 4), "depth": i % 7, "seed": i})
                mlflow.set_tags({"team": "vision", "trial": str(i)})
                now = int(time.time() * 1000)
                history = [Metric("loss", float(1 / (s + 1) + i), now + s, s) for s in
                           range(points)]
                history += [Metric("acc", float(s / points), now + s, s) for s in
                            range(points)]
                for start in range(0, len(history), 1000):
                    client.log_batch(run_id, metrics=history[start:start + 1000])
                mlflow.log_dict({"trial": i}, "config/settings.json")
                if i == 0:
                    mlflow.log_input(mlflow.data.from_pandas(frame, name="iris-like"),
                                     context="training")
                    big = os.path.join(tmp, "weights.bin")
                    with open(big, "wb") as fh:
                        fh.write(os.urandom(big_mb * 1_000_000))
                    mlflow.log_artifact(big, "checkpoints")
                    made["big"] = run_id
                if i < 2:  # two versions of one registered model, from two runs
                    model = LogisticRegression().fit(frame[["x"]], frame["y"])
                    mlflow.sklearn.log_model(model, name="model",
                                             registered_model_name="laptop-classifier",
                                             pip_requirements=["scikit-learn"])
                if i == runs - NESTED - 1:  # the parent of the nested runs
                    for j in range(NESTED):
                        with mlflow.start_run(run_name=f"fold-{j}", nested=True) as child:
                            mlflow.log_param("fold", j)
                            mlflow.log_metric("fold_acc", 0.8 + j / 100, step=0)
                            made["runs"].append(child.info.run_id)
                    made["parent"] = run_id
                made["runs"].append(run_id)
    client.set_registered_model_alias("laptop-classifier", "champion", "2")
    client.set_registered_model_tag("laptop-classifier", "owner", "vision")
    client.update_registered_model("laptop-classifier", description="from the laptop")

    @mlflow.trace(name="predict")
    def predict(x: float) -> float:
        with mlflow.start_span(name="features"):
            return x * 2

    predict(3.0)
    mlflow.flush_trace_async_logging()
    made["experiment"] = EXPERIMENT
    mlflow.set_experiment(SHARED)  # one the team has too
    for i in range(2):
        with mlflow.start_run(run_name=f"baseline-{i}"):
            mlflow.log_metric("acc", 0.5 + i / 10)
    made["shared"] = SHARED
    return made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--big-mb", type=int, default=20)
    args = parser.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = args.url
    print(json.dumps(build(args.runs, args.points, args.big_mb)))


if __name__ == "__main__":
    main()
