"""Turn what the user asked for into one resolved :class:`ServerConfig`.

This module is pure: it reads the environment and the file system to resolve
defaults and to check that the request can work, but it starts nothing. Every
problem is reported here, before any process exists, so a bad flag never
leaves anything half-started.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

DEFAULT_DATA_DIR = "~/mlflow_data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 120.0
FIRST_PORT = 5000

#: Database engines MLflow's SQLAlchemy store supports.
DB_ENGINES = ("postgresql", "mysql", "sqlite", "mssql")

#: SQLAlchemy driver name -> (Python module it imports, pip package that provides it).
DB_DRIVERS: dict[str, tuple[str, str]] = {
    "psycopg": ("psycopg", "psycopg[binary]"),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "pg8000": ("pg8000", "pg8000"),
    "mysqldb": ("MySQLdb", "mysqlclient"),
    "pymysql": ("pymysql", "PyMySQL"),
    "mysqlconnector": ("mysql.connector", "mysql-connector-python"),
    "pyodbc": ("pyodbc", "pyodbc"),
    "pymssql": ("pymssql", "pymssql"),
    "pysqlite": ("sqlite3", "pysqlite3"),
}

#: Artifact URI schemes, with the module the server needs for them (None: nothing extra).
ARTIFACT_SCHEMES: dict[str, tuple[str, str] | None] = {
    "": None,
    "file": None,
    "mlflow-artifacts": None,
    "http": None,
    "https": None,
    "s3": ("boto3", "boto3"),
    "gs": ("google.cloud.storage", "google-cloud-storage"),
    "wasbs": ("azure.storage.blob", "azure-storage-blob azure-identity"),
    "abfss": ("azure.storage.filedatalake", "azure-storage-file-datalake azure-identity"),
    "hdfs": ("pyarrow", "pyarrow"),
    "viewfs": ("pyarrow", "pyarrow"),
    "sftp": ("pysftp", "pysftp"),
    "ftp": None,
    "dbfs": None,
}

#: `mlflow server` flags that mlflow_magic sets itself; passing them after `--` would
#: contradict the record of the running server.
MANAGED_SERVER_FLAGS = frozenset({
    "--backend-store-uri",
    "--registry-store-uri",
    "--default-artifact-root",
    "--artifacts-destination",
    "--serve-artifacts",
    "--no-serve-artifacts",
    "--artifacts-only",
    "--host",
    "-h",
    "--port",
    "-p",
    "--workers",
    "-w",
    "--allowed-hosts",
    "--cors-allowed-origins",
})

#: `mlflow server` flags that cannot work under mlflow_magic, and why.
UNSUPPORTED_SERVER_FLAGS = {
    "--static-prefix": "the UI and /health must sit at the server's root, where "
                       "mlflow_magic and Jupyter's proxy look for them; the proxy already "
                       "gives the UI a path of its own (<base_url>proxy/<port>/)",
}

#: The user-facing option that controls each setting compared on reuse.
SETTING_FLAGS: dict[str, str] = {
    "backend_store_uri": "--backend-store-uri/--sqlite/--file-store",
    "registry_store_uri": "--registry-store-uri",
    "default_artifact_root": "--default-artifact-root",
    "artifacts_destination": "--artifacts-destination",
    "serve_artifacts": "--no-serve-artifacts",
    "artifacts_only": "--artifacts-only",
    "host": "--host",
    "port": "--port",
}


@dataclass(frozen=True)
class ServerOptions:
    """What the user asked for; ``None`` means "not said, use the default"."""

    path: str | os.PathLike[str] | None = None
    sqlite: bool = False
    file_store: bool = False
    backend_store_uri: str | None = None
    registry_store_uri: str | None = None
    default_artifact_root: str | None = None
    artifacts_destination: str | None = None
    no_serve_artifacts: bool = False
    artifacts_only: bool = False
    host: str | None = None
    port: int | None = None
    workers: int | None = None
    timeout: float | None = None
    jobs: bool = False
    attached: bool = False
    allowed_hosts: str | None = None
    cors_allowed_origins: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerConfig:
    """A fully resolved request for one server on one data folder."""

    data_dir: Path
    backend_store_uri: str | None
    registry_store_uri: str | None
    default_artifact_root: str | None
    artifacts_destination: str | None
    serve_artifacts: bool
    artifacts_only: bool
    host: str
    port: int | None
    workers: int
    timeout: float
    jobs: bool = False
    attached: bool = False
    allowed_hosts: str | None = None
    cors_allowed_origins: str | None = None
    extra_args: tuple[str, ...] = ()
    #: settings the user named explicitly: only these are compared on reuse
    explicit: frozenset[str] = field(default_factory=frozenset)

    def settings(self) -> dict[str, object]:
        """The settings that define which server this is, with passwords masked."""
        return {
            "backend_store_uri": mask_uri(self.backend_store_uri),
            "registry_store_uri": mask_uri(self.registry_store_uri),
            "default_artifact_root": self.default_artifact_root,
            "artifacts_destination": self.artifacts_destination,
            "serve_artifacts": self.serve_artifacts,
            "artifacts_only": self.artifacts_only,
            "host": self.host,
            "port": self.port,
        }

    @property
    def artifact_location(self) -> str | None:
        """Where artifacts end up on disk or in the bucket."""
        if self.serve_artifacts:
            return self.artifacts_destination
        return self.default_artifact_root


def resolve_data_dir(path: str | os.PathLike[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> Path:
    """The data folder: ``path``, else ``$MLFLOW_PATH``, else ``~/mlflow_data``.

    Only resolves; :func:`ensure_data_dir` creates it. Keeping the two apart lets
    ``status`` and ``stop`` name a folder without creating it.
    """
    environ = os.environ if environ is None else environ
    raw = os.fspath(path) if path is not None else environ.get("MLFLOW_PATH") or DEFAULT_DATA_DIR
    return Path(os.path.expandvars(raw)).expanduser().resolve()


def ensure_data_dir(data_dir: Path) -> Path:
    """Create the data folder and prove it is writable, or explain how to fix it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".mlflow_magic_probe"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"The data folder {data_dir} cannot be used: {exc.strerror or exc}. "
            "Choose a folder you can write to with --path DIR (or set MLFLOW_PATH), "
            "or fix the folder's permissions."
        ) from None
    return data_dir


def resolve(options: ServerOptions, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Check ``options`` and resolve every default into a :class:`ServerConfig`."""
    _check_conflicts(options)
    _check_numbers(options)
    _check_extra_args(options.extra_args)
    data_dir = ensure_data_dir(resolve_data_dir(options.path, environ))

    backend = _resolve_backend(options, data_dir)
    serve_artifacts = not options.no_serve_artifacts
    default_root = options.default_artifact_root
    destination = options.artifacts_destination
    if serve_artifacts and destination is None:
        destination = str(data_dir / "artifacts")
    if not serve_artifacts and default_root is None:
        default_root = str(data_dir / "artifacts")
    for flag, uri in (("--default-artifact-root", default_root),
                      ("--artifacts-destination", destination)):
        if uri is not None:
            check_artifact_uri(uri, flag)
    if options.registry_store_uri is not None:
        check_backend_uri(options.registry_store_uri, "--registry-store-uri")

    return ServerConfig(
        data_dir=data_dir,
        backend_store_uri=backend,
        registry_store_uri=options.registry_store_uri,
        default_artifact_root=default_root,
        artifacts_destination=destination,
        serve_artifacts=serve_artifacts,
        artifacts_only=options.artifacts_only,
        host=options.host or DEFAULT_HOST,
        port=options.port,
        workers=options.workers or 1,
        timeout=options.timeout or DEFAULT_TIMEOUT,
        jobs=options.jobs,
        attached=options.attached,
        allowed_hosts=options.allowed_hosts,
        cors_allowed_origins=options.cors_allowed_origins,
        extra_args=tuple(options.extra_args),
        explicit=_explicit_settings(options),
    )


def _explicit_settings(options: ServerOptions) -> frozenset[str]:
    """Which reuse-relevant settings the user named, so defaults never cause a mismatch."""
    named = {
        "backend_store_uri": options.sqlite or options.file_store
        or options.backend_store_uri is not None,
        "registry_store_uri": options.registry_store_uri is not None,
        "default_artifact_root": options.default_artifact_root is not None,
        "artifacts_destination": options.artifacts_destination is not None,
        "serve_artifacts": options.no_serve_artifacts,
        "artifacts_only": options.artifacts_only,
        "host": options.host is not None,
        "port": options.port is not None,
    }
    return frozenset(name for name, said in named.items() if said)


def _check_conflicts(options: ServerOptions) -> None:
    """Reject flag combinations that cannot mean anything sensible."""
    backends = [name for name, said in (
        ("--sqlite", options.sqlite),
        ("--file-store", options.file_store),
        ("--backend-store-uri", options.backend_store_uri is not None),
    ) if said]
    if len(backends) > 1:
        raise ConfigError(
            f"{' and '.join(backends)} both choose the backend store; give only one of them "
            "(--sqlite is the default: <data folder>/mlflow.db)."
        )
    if options.no_serve_artifacts and options.artifacts_destination is not None:
        raise ConfigError(
            "--artifacts-destination only applies when the server proxies artifacts, but "
            "--no-serve-artifacts turns that off. Drop one of the two (with "
            "--no-serve-artifacts, use --default-artifact-root to say where clients write)."
        )
    if options.artifacts_only and options.no_serve_artifacts:
        raise ConfigError(
            "--artifacts-only runs a server that only serves artifacts, which "
            "--no-serve-artifacts turns off. Drop one of the two."
        )
    stores = backends + (["--registry-store-uri"] if options.registry_store_uri else [])
    if options.artifacts_only and stores:
        raise ConfigError(
            f"--artifacts-only runs a server without a tracking backend, so {', '.join(stores)}"
            " has no effect. Drop it, or drop --artifacts-only to run a tracking server."
        )


def _check_numbers(options: ServerOptions) -> None:
    """Port, workers and timeout must be in range."""
    if options.port is not None and not 1 <= options.port <= 65535:
        raise ConfigError(
            f"Port {options.port} is not a valid TCP port. Give --port a number from 1 to "
            f"65535, or leave it out to use the first free port from {FIRST_PORT}."
        )
    if options.workers is not None and options.workers < 1:
        raise ConfigError(f"--workers must be 1 or more, not {options.workers}.")
    if options.timeout is not None and options.timeout <= 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, not {options.timeout}.")


def _check_extra_args(extra_args: Sequence[str]) -> None:
    """Arguments after ``--`` must not fight the flags mlflow_magic manages."""
    for arg in extra_args:
        flag = arg.split("=", 1)[0]
        if flag in UNSUPPORTED_SERVER_FLAGS:
            raise ConfigError(f"{flag} cannot be used with mlflow_magic: "
                              f"{UNSUPPORTED_SERVER_FLAGS[flag]}. Remove it.")
        if flag in MANAGED_SERVER_FLAGS:
            raise ConfigError(
                f"{flag} was given after `--`, but mlflow_magic sets it itself. Put it before "
                f"`--` as an option of `%mlflow_server start` (see `%mlflow_server?`)."
            )


def _resolve_backend(options: ServerOptions, data_dir: Path) -> str | None:
    """The backend store URI: SQLite in the data folder unless told otherwise."""
    if options.artifacts_only:
        return None
    if options.file_store:
        return str(data_dir / "mlruns")
    if options.backend_store_uri is not None:
        check_backend_uri(options.backend_store_uri, "--backend-store-uri")
        return options.backend_store_uri
    return f"sqlite:///{data_dir / 'mlflow.db'}"


def uri_scheme(uri: str) -> str:
    """The scheme of ``uri``, or ``""`` for a plain path (Windows drives included)."""
    scheme = urlsplit(uri).scheme.lower()
    return "" if len(scheme) == 1 else scheme


def is_file_store(uri: str | None) -> bool:
    """True for a file-store backend (a path or ``file:`` URI), which MLflow >= 3.13 gates."""
    return uri is not None and uri_scheme(uri) in ("", "file")


def check_backend_uri(uri: str, flag: str) -> None:
    """A backend or registry URI needs a supported database and an installed driver."""
    scheme = uri_scheme(uri)
    if scheme in ("", "file"):
        return
    engine, _, driver = scheme.partition("+")
    if engine not in DB_ENGINES:
        raise ConfigError(
            f"{flag} {mask_uri(uri)} has the scheme '{scheme}', which MLflow cannot use as a "
            f"store. Use a database URI ({', '.join(DB_ENGINES)}; e.g. "
            "postgresql://user:pass@host/db) or a local folder for a file store."
        )
    driver = driver or _default_driver(uri)
    if driver in DB_DRIVERS:
        module, package = DB_DRIVERS[driver]
        _require_module(module, package, f"{flag} {mask_uri(uri)}")


def _default_driver(uri: str) -> str:
    """The driver SQLAlchemy picks for a URI without ``+driver`` (it changes across releases:
    SQLAlchemy 2.1 uses psycopg 3 for ``postgresql://``, 2.0 used psycopg2)."""
    from sqlalchemy.engine.url import make_url

    try:
        return make_url(uri).get_dialect().driver
    except Exception:  # a URI SQLAlchemy rejects is reported by MLflow itself
        return ""


def check_artifact_uri(uri: str, flag: str) -> None:
    """An artifact URI needs a known scheme and, for cloud stores, its client library."""
    scheme = uri_scheme(uri)
    if scheme not in ARTIFACT_SCHEMES:
        known = ", ".join(s for s in ARTIFACT_SCHEMES if s)
        raise ConfigError(
            f"{flag} {mask_uri(uri)} has the scheme '{scheme}', which MLflow cannot store "
            f"artifacts in. Use a local folder or one of: {known}."
        )
    needed = ARTIFACT_SCHEMES[scheme]
    if needed is not None:
        _require_module(needed[0], needed[1], f"{flag} {mask_uri(uri)}")


def _require_module(module: str, package: str, what: str) -> None:
    """Fail early, naming the pip package, when a driver is missing."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(
            f"{what} needs the Python module '{module}', which is not installed in "
            f"{sys.executable}. Install it with `pip install {package}` and start again."
        )


def mask_uri(uri: str | None) -> str | None:
    """Replace the password in ``uri`` with ``***`` so it can be shown or stored."""
    if not uri:
        return uri
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return uri
    if not password:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def mask_args(args: Sequence[str]) -> list[str]:
    """Mask every URI-looking argument of a command line."""
    return [mask_uri(arg) if "://" in arg else arg for arg in args]  # type: ignore[misc]


def server_flags(config: ServerConfig, port: int) -> list[str]:
    """The ``mlflow server`` flags for ``config``, without secrets.

    The backend and registry URIs may hold passwords, so they travel in the child's
    environment (see :func:`server_env`), never on its command line, where ``ps``
    would show them to every user of the machine.
    """
    flags = ["--host", config.host, "--port", str(port), "--workers", str(config.workers)]
    flags.append("--serve-artifacts" if config.serve_artifacts else "--no-serve-artifacts")
    if config.artifacts_only:
        flags.append("--artifacts-only")
    if config.artifacts_destination:
        flags += ["--artifacts-destination", config.artifacts_destination]
    if config.default_artifact_root:
        flags += ["--default-artifact-root", config.default_artifact_root]
    if config.allowed_hosts:
        flags += ["--allowed-hosts", config.allowed_hosts]
    if config.cors_allowed_origins:
        flags += ["--cors-allowed-origins", config.cors_allowed_origins]
    return [*flags, *config.extra_args]


def server_argv(config: ServerConfig, port: int) -> list[str]:
    """The command that runs the server: ``mlflow server`` in one process (see serve.py)."""
    return [sys.executable, "-m", "mlflow_magic.serve", *server_flags(config, port)]


def equivalent_command(config: ServerConfig, port: int) -> list[str]:
    """The plain ``mlflow server`` command this server is equivalent to, passwords masked."""
    stores = []
    if config.backend_store_uri:
        stores += ["--backend-store-uri", mask_uri(config.backend_store_uri) or ""]
    if config.registry_store_uri:
        stores += ["--registry-store-uri", mask_uri(config.registry_store_uri) or ""]
    return ["mlflow", "server", *stores, *mask_args(server_flags(config, port))]


def server_env(config: ServerConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the caller's, plus store URIs and feature switches."""
    env = dict(os.environ if environ is None else environ)
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_REGISTRY_STORE_URI"):
        env.pop(name, None)
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
    for name, value in (("MLFLOW_SERVER_ALLOWED_HOSTS", config.allowed_hosts),
                        ("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS", config.cors_allowed_origins)):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env
