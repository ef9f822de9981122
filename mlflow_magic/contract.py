"""Every name that crosses a process boundary, in one place.

mlflow_magic runs in several kinds of process: the kernel or terminal, the
MLflow server, the Jupyter server (its extension and the launcher's
forwarder), and every MLflow process of the environment (through MLflow's
request-header entry point). They talk through environment variables, files
in the data folder, HTTP headers, cookies and routes, and log lines. Each of
those names is defined here and nowhere else, so one side can never drift
from the other. This module imports nothing: the server process and MLflow's
own processes load it for free.
"""

from __future__ import annotations

# --- the data folder's private files -------------------------------------------------------

#: The private folder inside every data folder (0700): record, options, log, lock, key.
RECORD_DIR = ".mlflow_magic"
#: The folder's key (0600), made once and kept across restarts: every request to the
#: folder's server must carry it (``/health`` aside). See ``mlflow_magic/access.py``.
KEY_FILE = "key"
#: One-time login codes for a browser (files named by the code's digest, 0600).
LOGINS_DIR = "logins"
#: How long a one-time login code stays valid, in seconds.
LOGIN_TTL = 600.0
#: How long a browser's session cookie stays valid, in seconds.
SESSION_TTL = 12 * 3600.0

# --- HTTP between clients, the Jupyter routes and the server's gate ------------------------

#: The request header that carries the folder's key to its server.
KEY_HEADER = "X-Mlflow-Magic-Key"
#: The query parameter of a one-time login link (``<ui>/?mlflow_magic_login=<code>``).
LOGIN_PARAM = "mlflow_magic_login"
#: The session cookie a login sets, one per server port (cookies ignore ports).
SESSION_COOKIE = "mlflow-magic-{port}"
#: Set on the gate's own refusals, so a client can tell them from MLflow's basic auth.
GATE_HEADER = "X-Mlflow-Magic-Gate"
#: The only path the gate lets through without the key (readiness checks).
OPEN_PATHS = frozenset({"/health"})

# --- the server process's environment ------------------------------------------------------

#: The folder's private folder, for the gate: set only for a server private to its user.
PRIVATE_DIR_ENV = "MLFLOW_MAGIC_PRIVATE_DIR"
#: The app the server's workers wrap, as ``mlflow server`` named it (``module:attr``, or
#: ``module:factory()`` for an app factory); set by ``serve.py`` for ``served_app.py``.
APP_ENV = "MLFLOW_MAGIC_APP"
#: ``asgi`` (uvicorn) or ``wsgi`` (gunicorn, waitress): how the gate wraps that app.
APP_KIND_ENV = "MLFLOW_MAGIC_APP_KIND"
#: The listening socket the starter bound and handed to the server (a file descriptor
#: number): the port is held from the moment it is chosen, so no other start can take it.
LISTEN_FD_ENV = "MLFLOW_MAGIC_LISTEN_FD"

# --- the Jupyter server's environment ------------------------------------------------------

#: Set by the server extension in the Jupyter server's process (so its children, the
#: launcher's forwarder among them, see it): the route's path, ``<base_url>mlflow-magic/proxy/``.
ROUTE_ENV = "MLFLOW_MAGIC_ROUTE"
