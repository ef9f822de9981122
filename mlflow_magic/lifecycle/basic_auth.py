"""MLflow's basic-auth app (``--app-name basic-auth``) for a folder's server.

MLflow 3.17 asks three things of it: the ``mlflow[auth]`` extra, a Flask secret
key (``MLFLOW_FLASK_SERVER_SECRET_KEY``), and, on an empty user database, an
admin password of at least 12 characters. Its user database defaults to
``basic_auth.db`` in the server's working directory, which for a background
server is whatever folder the kernel ran in. Here it lives in the data folder,
the secret key is made once and kept in the private record folder (so logins
survive a restart), and the admin password is read from
``MLFLOW_AUTH_ADMIN_PASSWORD``: it is never shown, stored or put on a command line.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from ..contract import BASIC_AUTH_APP
from ..errors import ConfigError
from ..state import records

MIN_PASSWORD = 12
PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"

_CONFIG = """[mlflow]
default_permission = READ
database_uri = sqlite:///{database}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


def user_database(data_dir: Path) -> Path:
    return data_dir / "basic_auth.db"


def server_env(app_name: str | None, data_dir: Path,
               environ: Mapping[str, str]) -> dict[str, str]:
    """What the server's environment needs for ``app_name`` (nothing for other apps)."""
    if app_name != BASIC_AUTH_APP:
        return {}
    env = {SECRET_KEY_ENV: environ.get(SECRET_KEY_ENV) or _secret_key(data_dir)}
    if environ.get(CONFIG_ENV):  # the user's own auth config decides everything
        return env
    config = records.record_dir(data_dir) / "basic_auth.ini"
    records.write_private(config, _CONFIG.format(database=user_database(data_dir)))
    env[CONFIG_ENV] = str(config)
    if not user_database(data_dir).exists():
        password = environ.get(PASSWORD_ENV, "")
        if len(password) < MIN_PASSWORD:
            raise ConfigError(
                f"The first start with --app-name basic-auth creates the admin user, and "
                f"MLflow needs its password (at least {MIN_PASSWORD} characters) in "
                f"{PASSWORD_ENV}" + (", which is too short" if password else ", which is not "
                                     "set") + ". Set it in the environment (not on a command "
                "line: e.g. `%env` in a notebook reads no history file; `read -s` in a shell) "
                "and start again.")
    return env


def _secret_key(data_dir: Path) -> str:
    """The folder's Flask secret key: made once, kept private, stable across restarts."""
    path = records.record_dir(data_dir) / "flask_secret_key"
    try:
        return path.read_text().strip()
    except OSError:
        key = secrets.token_hex(32)
        records.write_private(path, key)
        return key
