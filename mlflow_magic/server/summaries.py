"""The folder's server's own read for a push (:data:`~mlflow_magic.contract.RUN_SUMMARIES_PATH`):
per run of an experiment, its metric point count per key and its artifact files with sizes.

A push decides which runs changed since the last one from a digest of each run. Through
MLflow's API that needs every metric history (200 runs of 1,000 points: ~10 s here) and a
listing per run (~4 s); here it is one query and a walk of the artifact folder, in one
request. Servers of MLflow's auth app do not serve it (its permissions are per experiment,
and this read knows none): a push reads those through the API, as it reads a server of an
older mlflow_magic.
"""

from __future__ import annotations

import os

from .. import internals
from ..contract import APP_ENV, RUN_SUMMARIES_PATH

#: The app factories of MLflow's auth, whose permissions this read would go around.
_AUTH_APPS = ("mlflow.server.auth",)


def summaries(experiment_id: str) -> dict | None:
    """``{"runs": {run id: {"points": {key: count}, "files": [[path, size], ...] | None}}}``;
    None where the store is not SQL."""
    counts = internals.point_counts(experiment_id)
    files = internals.run_artifact_files(experiment_id)
    if counts is None or files is None:
        return None
    return {"runs": {run_id: {"points": counts.get(run_id, {}),
                              "files": None if listed is None else [list(f) for f in listed]}
                     for run_id, listed in files.items()}}


def serve_run_summaries(flask_app) -> bool:
    """Add the route to MLflow's Flask app; False on an auth app (see the module's text)."""
    if os.environ.get(APP_ENV, "").startswith(_AUTH_APPS):
        return False
    from flask import jsonify, request

    def run_summaries():
        found = summaries(request.args.get("experiment_id", ""))
        if found is None:
            return jsonify(error_code="RESOURCE_DOES_NOT_EXIST",
                           message="No run summaries from this store."), 404
        return jsonify(found)

    flask_app.add_url_rule(RUN_SUMMARIES_PATH, "mlflow_magic_run_summaries", run_summaries,
                           methods=["GET"])
    return True
