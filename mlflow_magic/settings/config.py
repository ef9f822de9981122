"""Check what the user asked for and resolve it into one :class:`ServerConfig`.

This module only reads: it resolves defaults from the environment and checks
that the request can work (drivers installed, flags consistent), but it creates
nothing and starts nothing. Every problem is reported here, before any folder
or process exists, so a bad flag never leaves anything half-started. What the
user asked for is :mod:`options`; the launch command and environment derived
from a config are :mod:`server_command`; secrets are masked by :mod:`masking`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..contract import BASIC_AUTH_APP, FIRST_PORT_ENV, IDLE_TIMEOUT_ENV
from ..errors import ConfigError
from .masking import mask_args, mask_uri
from .options import SETTING_FLAGS, ServerOptions

DEFAULT_DATA_DIR = "~/mlflow_data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 120.0
#: A server with no request for an hour sleeps (its memory freed, its port kept).
DEFAULT_IDLE_TIMEOUT = 3600.0
FIRST_PORT = 5000
#: The units of a duration (``30m``); a bare number is seconds.
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: Database engines MLflow's SQLAlchemy store supports.
DB_ENGINES = ("postgresql", "mysql", "sqlite", "mssql")

def _pip(*packages: str) -> str:
    return " or ".join(f"`pip install {p}`" for p in packages)


#: SQLAlchemy driver name -> (Python module it imports, how to install it).
DB_DRIVERS: dict[str, tuple[str, str]] = {
    "psycopg": ("psycopg", _pip("'psycopg[binary]'")),
    "psycopg2": ("psycopg2", _pip("psycopg2-binary")),
    "pg8000": ("pg8000", _pip("pg8000")),
    "mysqldb": ("MySQLdb", _pip("mysqlclient")),
    "pymysql": ("pymysql", _pip("PyMySQL")),
    "mysqlconnector": ("mysql.connector", _pip("mysql-connector-python")),
    "pyodbc": ("pyodbc", _pip("pyodbc")),
    "pymssql": ("pymssql", _pip("pymssql")),
    "pysqlite": ("sqlite3", _pip("pysqlite3")),
}

#: Artifact URI schemes, with the module the server needs for them (None: nothing extra).
ARTIFACT_SCHEMES: dict[str, tuple[str, str] | None] = {
    "": None,
    "file": None,
    "mlflow-artifacts": None,
    "http": None,
    "https": None,
    "s3": ("boto3", _pip("boto3")),
    "gs": ("google.cloud.storage", _pip("google-cloud-storage")),
    "wasbs": ("azure.storage.blob", _pip("azure-storage-blob azure-identity")),
    "abfss": ("azure.storage.filedatalake", _pip("azure-storage-file-datalake azure-identity")),
    "hdfs": ("pyarrow", _pip("pyarrow")),
    "viewfs": ("pyarrow", _pip("pyarrow")),
    "sftp": ("pysftp", _pip("pysftp")),
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
    "--app-name",
})

#: `mlflow server` flags that cannot work under mlflow_magic, and why.
UNSUPPORTED_SERVER_FLAGS = {
    "--static-prefix": "the UI and /health must sit at the server's root, where "
                       "mlflow_magic and Jupyter's proxy look for them; the proxy already "
                       "gives the UI a path of its own (<base_url>proxy/<port>/)",
}

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
    #: seconds without a request before the server sleeps (0: never)
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    jobs: bool = False
    attached: bool = False
    allowed_hosts: str | None = None
    cors_allowed_origins: str | None = None
    app_name: str | None = None
    extra_args: tuple[str, ...] = ()
    #: the team server every change is copied to (``--sync-to``), or None
    sync_to: str | None = None
    upgrade_db: bool = False
    #: settings the user named explicitly: only these are compared on reuse
    explicit: frozenset[str] = field(default_factory=frozenset)
    #: what the user asked for, kept (privately) so ``restart`` can ask for it again
    options: ServerOptions = field(default_factory=ServerOptions, compare=False, repr=False)

    @property
    def private(self) -> bool:
        """A server on loopback only is its user's alone: its gate wants the folder's key.

        One that listens beyond this machine is a team server: its clients elsewhere
        have no key, so it has no gate (MLflow's ``--app-name basic-auth`` guards it).
        """
        return is_loopback(self.host)

    @property
    def exposed(self) -> bool:
        """Listening beyond loopback with no login: anyone who reaches the port may write."""
        return not self.private and self.app_name != BASIC_AUTH_APP

    def settings(self) -> dict[str, object]:
        """Every setting that defines which server this is, secrets masked.

        These are stored in the record and compared on reuse: whatever the user can
        name on ``start`` is here, so naming it never silently reuses a server without it.
        """
        return {
            "backend_store_uri": mask_uri(self.backend_store_uri),
            "registry_store_uri": mask_uri(self.registry_store_uri),
            "default_artifact_root": mask_uri(self.default_artifact_root),
            "artifacts_destination": mask_uri(self.artifacts_destination),
            "serve_artifacts": self.serve_artifacts,
            "artifacts_only": self.artifacts_only,
            "host": self.host,
            "port": self.port,
            "workers": self.workers,
            "idle_timeout": self.idle_timeout,
            "jobs": self.jobs,
            "attached": self.attached,
            "allowed_hosts": self.allowed_hosts,
            "cors_allowed_origins": self.cors_allowed_origins,
            "app_name": self.app_name,
            "extra_args": mask_args(self.extra_args),
            "sync_to": mask_uri(self.sync_to),
        }


#: Host names that reach only this machine.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str | None) -> bool:
    """True for an address only this machine reaches (127.x, ::1, localhost)."""
    return bool(host) and (host in LOOPBACK_NAMES or host.startswith("127."))  # type: ignore[union-attr]


def resolve_data_dir(path: str | os.PathLike[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> Path:
    """The data folder: ``path``, else ``$MLFLOW_PATH``, else ``~/mlflow_data``.

    Only resolves; :func:`mlflow_magic.state.records.prepare_folder` creates it. Keeping the
    two apart lets ``status`` and ``stop`` name a folder without creating it.
    """
    environ = os.environ if environ is None else environ
    raw = os.fspath(path) if path is not None else environ.get("MLFLOW_PATH") or DEFAULT_DATA_DIR
    return Path(os.path.expandvars(raw)).expanduser().resolve()


def data_folder(path: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> Path:
    """:func:`resolve_data_dir`, refusing a file: ``status`` would otherwise call it a folder
    whose server "is not running" (and advise a ``chmod``), and ``start`` fail on it later
    with the system's "Not a directory"."""
    data_dir = resolve_data_dir(path, environ)
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(
            f"{data_dir} is a file, not a data folder. Name the folder that holds (or is to "
            "hold) mlflow.db with --path DIR or MLFLOW_PATH; a folder that does not exist yet "
            "is made by `start`.")
    return data_dir


def duration(text: str) -> float:
    """Seconds in ``30m``, ``2h``, ``90s``, ``1d`` or a bare number of seconds; 0 is allowed
    (never). A ValueError names the forms (argparse says it as the flag's error)."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw[-1:].isalpha() else 1.0
    number = raw[:-1] if raw[-1:].isalpha() else raw
    try:
        seconds = float(number) * unit  # type: ignore[operator]
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a duration: give 30m, 2h, 90s, 1d or 0 (never)"
                         ) from None
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{text!r} is not a duration: it must be 0 (never) or more")
    return seconds


duration.__name__ = "duration"  # what argparse names in "invalid duration value"


def human(seconds: float) -> str:
    """``1h``, ``30m``, ``90s``, ``never``: a duration as a flag would say it."""
    if seconds <= 0:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def default_idle_timeout(environ: Mapping[str, str] | None = None) -> float:
    """``$MLFLOW_MAGIC_IDLE_TIMEOUT`` (an admin's default), else one hour."""
    raw = (os.environ if environ is None else environ).get(IDLE_TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_IDLE_TIMEOUT
    try:
        return duration(raw)
    except ValueError as exc:
        raise ConfigError(f"{IDLE_TIMEOUT_ENV}={raw!r}: {exc}. Fix it, or unset it for the "
                          f"default ({human(DEFAULT_IDLE_TIMEOUT)}).") from None


def first_port(environ: Mapping[str, str] | None = None) -> int:
    """The first port a start without ``--port`` tries (``$MLFLOW_MAGIC_FIRST_PORT``)."""
    raw = (os.environ if environ is None else environ).get(FIRST_PORT_ENV, "")
    if raw.isdigit() and 1 <= int(raw) <= 65535:
        return int(raw)
    if raw:
        raise ConfigError(f"{FIRST_PORT_ENV}={raw!r} is not a TCP port: set it to a number "
                          f"from 1 to 65535, or unset it to start from {FIRST_PORT}.")
    return FIRST_PORT


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: wildcard hosts become loopback."""
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def start_command(data_dir: Path, port: int | None = None) -> str:
    """The cell that starts ``data_dir``'s server again (on ``port``: the address open UIs
    and kernels still use)."""
    flags = "" if data_dir == resolve_data_dir() else f" --path {data_dir}"
    return f"%mlflow_server start{flags}" + (f" --port {port}" if port else "")


def resolve(options: ServerOptions, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Check ``options`` and resolve every default into a :class:`ServerConfig`.

    Checks come first and create nothing: bad input leaves no folder behind.
    """
    _check_conflicts(options)
    _check_numbers(options)
    _check_extra_args(options.extra_args or ())
    data_dir = data_folder(options.path, environ)
    backend = _resolve_backend(options, data_dir)
    serve_artifacts = options.serve_artifacts is not False
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
    if options.app_name == BASIC_AUTH_APP:
        _require_module("flask_wtf", _pip("'mlflow[auth]'"),
                        "--app-name basic-auth (MLflow's login)")
    if options.upgrade_db and not (backend or "").startswith("sqlite:"):
        raise ConfigError(
            "--upgrade-db backs up and upgrades the SQLite database of the data folder; it "
            f"cannot back up {mask_uri(backend) or 'an artifacts-only server'}. Back that "
            "database up with its own tools, run `mlflow db upgrade <URI>`, then start again."
        )

    return ServerConfig(
        data_dir=data_dir,
        backend_store_uri=backend,
        registry_store_uri=options.registry_store_uri,
        default_artifact_root=default_root,
        artifacts_destination=destination,
        serve_artifacts=serve_artifacts,
        artifacts_only=bool(options.artifacts_only),
        host=options.host or DEFAULT_HOST,
        port=options.port,
        workers=options.workers or 1,
        timeout=options.timeout or DEFAULT_TIMEOUT,
        idle_timeout=(options.idle_timeout if options.idle_timeout is not None
                      else default_idle_timeout(environ)),
        jobs=bool(options.jobs),
        attached=bool(options.attached),
        allowed_hosts=options.allowed_hosts,
        cors_allowed_origins=options.cors_allowed_origins,
        app_name=options.app_name,
        extra_args=tuple(options.extra_args or ()),
        sync_to=_sync_target(options.sync_to),
        upgrade_db=options.upgrade_db,
        explicit=_explicit_settings(options),
        options=options,
    )


def _explicit_settings(options: ServerOptions) -> frozenset[str]:
    """Which settings the user named, so defaults never cause a mismatch on reuse."""
    named = {
        "backend_store_uri": options.sqlite or options.file_store
        or options.backend_store_uri is not None,
        "serve_artifacts": options.serve_artifacts is not None,
    }
    named.update({name: getattr(options, name) is not None for name in SETTING_FLAGS
                  if name not in named})
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
    if options.serve_artifacts is False and options.artifacts_destination is not None:
        raise ConfigError(
            "--artifacts-destination only applies when the server proxies artifacts, but "
            "--no-serve-artifacts turns that off. Drop one of the two (with "
            "--no-serve-artifacts, use --default-artifact-root to say where clients write)."
        )
    if options.artifacts_only and options.serve_artifacts is False:
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


def _sync_target(url: str | None) -> str | None:
    """``--sync-to``'s URL, checked: the team server's http(s) address ("" or None: none)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--sync-to needs the http(s) URL of a tracking server, not {mask_uri(url)!r}: "
            "give it as `--sync-to https://mlflow.example.org` (credentials come from "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
            "MLFLOW_TRACKING_TOKEN), or leave the flag out.")
    return url.rstrip("/")


def _check_numbers(options: ServerOptions) -> None:
    """Port, workers and timeout must be in range."""
    if options.port is not None and not 1 <= options.port <= 65535:
        raise ConfigError(
            f"Port {options.port} is not a valid TCP port. Give --port a number from 1 to "
            f"65535, or leave it out to use the first free port from {FIRST_PORT}."
        )
    if options.workers is not None and options.workers < 1:
        raise ConfigError(f"--workers must be 1 or more, not {options.workers}.")
    if options.idle_timeout is not None and not options.idle_timeout >= 0:
        raise ConfigError(f"--idle-timeout must be 0 (never sleep) or more, not "
                          f"{options.idle_timeout}: give 30m, 2h or 90s, for example.")
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
        uri = with_installed_driver(options.backend_store_uri)
        check_backend_uri(uri, "--backend-store-uri")
        return uri
    return f"sqlite:///{data_dir / 'mlflow.db'}"


#: Drivers that can stand in for an engine's default one, best first.
DRIVER_CHOICES = {"postgresql": ("psycopg", "psycopg2", "pg8000"),
                  "mysql": ("mysqldb", "pymysql", "mysqlconnector")}


def with_installed_driver(uri: str) -> str:
    """``uri`` with a driver that is installed, when it names none and the default is not.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, but MLflow's docs tell people
    to install ``psycopg2-binary``: with only psycopg2 there, the URI becomes
    ``postgresql+psycopg2://`` (status shows it) instead of failing.
    """
    scheme = uri_scheme(uri)
    engine, plus, _ = scheme.partition("+")
    if plus or engine not in DRIVER_CHOICES or _module_installed(
            DB_DRIVERS.get(_default_driver(uri), ("", ""))[0]):
        return uri
    for driver in DRIVER_CHOICES[engine]:
        if _module_installed(DB_DRIVERS[driver][0]):
            return f"{engine}+{driver}{uri[len(scheme):]}"
    return uri


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


def _module_installed(module: str) -> bool:
    if not module:
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _require_module(module: str, package: str, what: str) -> None:
    """Fail early, naming the pip package (or our extra), when a driver is missing."""
    if not _module_installed(module):
        raise ConfigError(
            f"{what} needs the Python module '{module}', which is not installed in "
            f"{sys.executable}. Install it with {package} and start again."
        )


