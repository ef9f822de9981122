"""The exact command and environment a server is launched with, derived from its config.

The real flags travel in the environment (``ARGS_ENV``); the command line shows
them masked. The server never inherits the variables that would change its
settings behind the record's back, nor Jupyter's credentials.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from .config import ServerConfig, is_file_store
from .masking import mask_args, mask_uri


def server_flags(config: ServerConfig, port: int) -> list[str]:
    """The ``mlflow server`` flags for ``config`` (store URIs travel in the environment)."""
    flags = ["--host", config.host, "--port", str(port), "--workers", str(config.workers)]
    flags.append("--serve-artifacts" if config.serve_artifacts else "--no-serve-artifacts")
    if config.artifacts_only:
        flags.append("--artifacts-only")
    if config.artifacts_destination:
        flags += ["--artifacts-destination", config.artifacts_destination]
    if config.default_artifact_root:
        flags += ["--default-artifact-root", config.default_artifact_root]
    if config.allowed_hosts:
        flags += ["--allowed-hosts", served_allowed_hosts(config.allowed_hosts)]
    if config.cors_allowed_origins:
        flags += ["--cors-allowed-origins", config.cors_allowed_origins]
    if config.app_name:
        flags += ["--app-name", config.app_name]
    return [*flags, *config.extra_args]


def server_argv(config: ServerConfig, port: int) -> list[str]:
    """The command that runs the server: ``mlflow server`` in one process (see serve.py).

    It shows the flags with secrets masked, because ``ps`` shows every command line to
    every user of the machine; the real ones travel in the environment
    (``mlflow_magic.server.serve.ARGS_ENV``).
    """
    return [sys.executable, "-m", "mlflow_magic.server.serve",
            *mask_args(server_flags(config, port))]


def equivalent_command(config: ServerConfig, port: int) -> list[str]:
    """The plain ``mlflow server`` command this server is equivalent to, secrets masked."""
    stores = []
    if config.backend_store_uri:
        stores += ["--backend-store-uri", mask_uri(config.backend_store_uri) or ""]
    if config.registry_store_uri:
        stores += ["--registry-store-uri", mask_uri(config.registry_store_uri) or ""]
    return ["mlflow", "server", *stores, *mask_args(server_flags(config, port))]


#: Host names of this machine's own clients (the kernel, scripts): MLflow's
#: ``--allowed-hosts`` replaces its default list, which holds them.
LOOPBACK_HOSTS = ("localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[[]::1]:*")


def served_allowed_hosts(allowed_hosts: str) -> str:
    """``--allowed-hosts`` as the server gets it: the user's hosts plus loopback.

    Without loopback, naming a public host would lock out the kernel that started
    the server (its tracking URI is ``http://127.0.0.1:<port>``): every call 403.
    """
    hosts = [h.strip() for h in allowed_hosts.split(",") if h.strip()]
    if "*" in hosts:
        return allowed_hosts
    return ",".join([*hosts, *(h for h in LOOPBACK_HOSTS if h not in hosts)])


#: Variables that set `mlflow server` options (its flags' ``envvar``) or that it sets for its
#: own workers. A kernel's values would silently change a server whose settings are
#: recorded, so the server never inherits them; mlflow_magic sets what it needs.
SERVER_ENV_DENYLIST = frozenset({
    "MLFLOW_BACKEND_STORE_URI", "MLFLOW_READ_REPLICA_BACKEND_STORE_URI",
    "MLFLOW_REGISTRY_STORE_URI", "MLFLOW_DEFAULT_ARTIFACT_ROOT", "MLFLOW_SERVE_ARTIFACTS",
    "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_ARTIFACTS_ONLY", "MLFLOW_HOST", "MLFLOW_PORT",
    "MLFLOW_WORKERS", "MLFLOW_STATIC_PREFIX", "MLFLOW_GUNICORN_OPTS", "MLFLOW_UVICORN_OPTS",
    "MLFLOW_EXPOSE_PROMETHEUS", "MLFLOW_TRACE_ARCHIVAL_CONFIG", "MLFLOW_WORKSPACE_STORE_URI",
    "MLFLOW_SERVER_ALLOWED_HOSTS", "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS",
    "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "MLFLOW_SERVER_X_FRAME_OPTIONS",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI", "PROMETHEUS_MULTIPROC_DIR",
    # A client's choice of experiment (a kernel's `set_experiment`): nothing to a server.
    "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID",
})
SERVER_ENV_DENY_PREFIXES = ("_MLFLOW_SERVER_", "MLFLOW_MAGIC_",
                            # Jupyter's and JupyterHub's credentials: the server needs none,
                            # and a process that holds them can act as the user in Jupyter.
                            "JUPYTERHUB_", "JPY_", "JUPYTER_TOKEN", "JUPYTER_PASSWORD")


def server_env(config: ServerConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the caller's, less server settings, plus ours.

    Credentials (``AWS_*``, ``MLFLOW_S3_ENDPOINT_URL``, ``MLFLOW_FLASK_SERVER_SECRET_KEY``,
    ...) pass through; see :func:`inherited_settings` for what is recorded of them.
    """
    env = {name: value for name, value in (os.environ if environ is None else environ).items()
           if name not in SERVER_ENV_DENYLIST and not name.startswith(SERVER_ENV_DENY_PREFIXES)}
    if config.backend_store_uri:
        env["MLFLOW_BACKEND_STORE_URI"] = config.backend_store_uri
    if config.registry_store_uri:
        env["MLFLOW_REGISTRY_STORE_URI"] = config.registry_store_uri
    if is_file_store(config.backend_store_uri):
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    # MLflow's job runner (7 huey consumers, each importing mlflow) serves only some GenAI
    # features; it is off unless asked for with --jobs.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if config.jobs else "false"
    # Read when mlflow.server is imported, which in the one-process launch happens before
    # `mlflow server` would set them from its flags: pass them in from the start.
    if config.allowed_hosts:
        env["MLFLOW_SERVER_ALLOWED_HOSTS"] = served_allowed_hosts(config.allowed_hosts)
    if config.cors_allowed_origins:
        env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] = config.cors_allowed_origins
    env["PYTHONUNBUFFERED"] = "1"
    return env


def inherited_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Names of the ``MLFLOW_*`` variables a server inherits (shown by ``status``)."""
    environ = os.environ if environ is None else environ
    return sorted(name for name in environ if name.startswith("MLFLOW_")
                  and name not in SERVER_ENV_DENYLIST
                  and not name.startswith(SERVER_ENV_DENY_PREFIXES))
