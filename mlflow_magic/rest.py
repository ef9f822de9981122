"""Plain HTTP to an MLflow server: is it up, which version, and small REST reads.

No MLflow import here: the kernel pays nothing for ``import mlflow`` until the
user's own code needs it.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Probe:
    """What an HTTP address answered: healthy MLflow (with version) or not."""

    healthy: bool
    version: str | None = None
    error: str | None = None
    #: the HTTP status of a refusal (401, 403), when the server answered with one
    status: int | None = None

    @property
    def login_required(self) -> bool:
        """``/health`` answered OK and ``/version`` asks for credentials (basic auth)."""
        return self.status == 401

    @property
    def answering(self) -> bool:
        """The server is up: healthy, or healthy behind a login."""
        return self.healthy or self.login_required


def probe(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None) -> Probe:
    """Ask ``/health`` and ``/version``: both must answer for the port to be MLflow.

    ``/health`` needs no credentials even with MLflow's basic auth; ``/version``
    then answers 401 unless ``auth`` (user, password) is given.
    """
    base = url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as resp:
            if resp.read(64).strip() != b"OK":
                return Probe(False, error="/health did not answer OK")
        request = urllib.request.Request(f"{base}/version")
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            version = resp.read(64).decode().strip().strip('"')
    except (OSError, ValueError) as exc:
        code = exc.code if isinstance(exc, urllib.error.HTTPError) else None
        return Probe(False, error=reason(exc), status=code)
    return Probe(True, version=version)


def reason(exc: BaseException) -> str:
    """A short, readable cause for a failed request."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)


def get_json(url: str, timeout: float = 5.0) -> object:
    """GET ``url`` and decode JSON: enough REST for status displays without mlflow."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def experiment_id_by_name(url: str, name: str) -> str:
    """The id of the experiment called ``name`` (KeyError/OSError if there is none)."""
    found = get_json(f"{url.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?"
                     f"experiment_name={quote(name)}")
    return found["experiment"]["experiment_id"]  # type: ignore[index]


def experiment_id_of_run(url: str, run_id: str) -> str:
    """The id of the experiment run ``run_id`` belongs to (KeyError/OSError if unknown)."""
    found = get_json(f"{url.rstrip('/')}/api/2.0/mlflow/runs/get?run_id={quote(run_id)}")
    return found["run"]["info"]["experiment_id"]  # type: ignore[index]
