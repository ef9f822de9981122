"""Plain HTTP to an MLflow server: is it up, which version, and small REST reads.

No MLflow import here: the kernel pays nothing for ``import mlflow`` until the
user's own code needs it.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..contract import GATE_HEADER, PROBE_HEADER

#: What mlflow_magic's own probes carry: they are no activity (a sleeping server stays
#: asleep for a status; see server/activity.py).
PROBE = {PROBE_HEADER: "1"}


@dataclass(frozen=True)
class Probe:
    """What an HTTP address answered: healthy MLflow (with version) or not."""

    healthy: bool
    version: str | None = None
    error: str | None = None
    #: the HTTP status of a refusal (401, 403), when the server answered with one
    status: int | None = None
    #: the refusal came from mlflow_magic's gate: a private server, not MLflow's login
    private: bool = False

    @property
    def login_required(self) -> bool:
        """``/health`` answered OK and ``/version`` asks for credentials (basic auth)."""
        return self.status == 401 and not self.private

    @property
    def answering(self) -> bool:
        """The server is up: healthy, or healthy behind a login or a gate."""
        return self.healthy or self.status == 401


def probe(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None,
          headers: Mapping[str, str] | None = None) -> Probe:
    """Ask ``/health`` and ``/version``: both must answer for the port to be MLflow.

    ``/health`` needs no credentials, behind MLflow's basic auth or mlflow_magic's
    gate; ``/version`` then answers 401 unless ``auth`` (user, password) or
    ``headers`` (the folder's key) say who asks.
    """
    found = health(url, timeout)
    if not found.healthy:
        return found
    return version(url, timeout, auth, headers)


def health(url: str, timeout: float = 2.0) -> Probe:
    """Ask ``/health`` alone (open on every server): something MLflow-like listens."""
    try:
        request = urllib.request.Request(f"{url.rstrip('/')}/health", headers=PROBE)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if resp.read(64).strip() != b"OK":
                return Probe(False, error="/health did not answer OK")
    except (OSError, ValueError) as exc:
        return _failed(exc)
    return Probe(True)


def version(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None,
            headers: Mapping[str, str] | None = None) -> Probe:
    """Ask ``/version``, with the credentials given: the server's MLflow version."""
    request = urllib.request.Request(f"{url.rstrip('/')}/version",
                                     headers={**PROBE, **(headers or {})})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            found = resp.read(64).decode().strip().strip('"')
    except (OSError, ValueError) as exc:
        return _failed(exc)
    return Probe(True, version=found)


def _failed(exc: BaseException) -> Probe:
    if isinstance(exc, urllib.error.HTTPError):
        return Probe(False, error=reason(exc), status=exc.code,
                     private=bool(exc.headers.get(GATE_HEADER)))
    return Probe(False, error=reason(exc))


def reason(exc: BaseException) -> str:
    """A short, readable cause for a failed request."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)


def get_json(url: str, timeout: float = 5.0,
             headers: Mapping[str, str] | None = None) -> Any:
    """GET ``url`` and decode JSON: enough REST for status displays without mlflow."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: object, timeout: float = 5.0,
              headers: Mapping[str, str] | None = None) -> Any:
    """POST ``body`` as JSON to ``url`` and decode the JSON answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **dict(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def experiment_id_by_name(url: str, name: str,
                          headers: Mapping[str, str] | None = None) -> str:
    """The id of the experiment called ``name`` (KeyError/OSError if there is none)."""
    found = get_json(f"{url.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?"
                     f"experiment_name={quote(name)}", headers=headers)
    return found["experiment"]["experiment_id"]


def experiment_name(url: str, experiment_id: str,
                    headers: Mapping[str, str] | None = None, timeout: float = 2.0) -> str:
    """The name of experiment ``experiment_id`` (KeyError/OSError if there is none)."""
    found = get_json(f"{url.rstrip('/')}/api/2.0/mlflow/experiments/get?"
                     f"experiment_id={quote(experiment_id)}", timeout=timeout, headers=headers)
    return found["experiment"]["name"]


def experiment_id_of_run(url: str, run_id: str,
                         headers: Mapping[str, str] | None = None) -> str:
    """The id of the experiment run ``run_id`` belongs to (KeyError/OSError if unknown)."""
    found = get_json(f"{url.rstrip('/')}/api/2.0/mlflow/runs/get?run_id={quote(run_id)}",
                     headers=headers)
    return found["run"]["info"]["experiment_id"]
