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
RECORD_FILE = "server.json"
OPTIONS_FILE = "options.json"
LOG_FILE = "server.log"
LOCK_FILE = "server.lock"
#: While it exists, an ``--attached`` server stops when its kernel exits.
ATTACH_FILE = "attached"
#: What the keeper runs (0600, secrets included: the server's command line and
#: environment), written by the starter and read again on SIGHUP (a restart in place).
KEEPER_SPEC_FILE = "keeper.spec.json"
#: What the keeper says it is doing (``KEEPER_STATES``), with since when and its server's pid.
KEEPER_STATE_FILE = "keeper.json"
#: Touched by the server on each request that counts (not /health, not a probe): the keeper
#: puts the server to sleep when it has not been touched for the idle timeout.
ACTIVITY_FILE = "activity"
#: The folder's key (0600), made once and kept across restarts: every request to the
#: folder's server must carry it (``/health`` aside). See ``mlflow_magic/security/keys.py``.
KEY_FILE = "key"
#: One-time login codes for a browser (files named by the code's digest, 0600).
LOGINS_DIR = "logins"
#: How long a one-time login code stays valid, in seconds.
LOGIN_TTL = 600.0
#: How long a browser's session cookie stays valid, in seconds.
SESSION_TTL = 12 * 3600.0
#: Kernel passes (files named by the pass's digest, 0600): see :data:`PASS_PATH`.
PASSES_DIR = "passes"

# --- HTTP between clients, the Jupyter routes and the server's gate ------------------------

#: The request header that carries the folder's key to its server.
KEY_HEADER = "X-Mlflow-Magic-Key"
#: The query parameter of a one-time login link (``<ui>/?mlflow_magic_login=<code>``).
LOGIN_PARAM = "mlflow_magic_login"
#: The session cookie a login sets, one per server port (cookies ignore ports).
SESSION_COOKIE = "mlflow-magic-{port}"
#: Sent by mlflow_magic's own probes (readiness, status, the panel): they are no activity, so
#: they neither keep a server awake nor count towards its idle timeout.
PROBE_HEADER = "X-Mlflow-Magic-Probe"
#: Set on the gate's own refusals, so a client can tell them from MLflow's basic auth.
GATE_HEADER = "X-Mlflow-Magic-Gate"
#: The only path the gate lets through without the key (readiness checks).
OPEN_PATHS = frozenset({"/health"})
#: The UI for a page of another site (VS Code's webview, Colab's output frame), where a
#: cookie may not be kept: ``/<PASS_PATH>/<pass>/...`` is the server's root, for as long as
#: the kernel that made the pass runs. The pass is in the path, so the UI's relative URLs
#: carry it on every request.
PASS_PATH = "mlflow-magic-pass"
#: The pages that may frame a server through a pass (``frame-ancestors``; MLflow's own
#: ``X-Frame-Options: SAMEORIGIN`` stays everywhere else): VS Code's webviews, desktop and
#: web, and Colab's pages and output frames. Any other page that frames it gets nothing.
FRAME_ANCESTORS = ("'self'", "vscode-webview:", "https://*.vscode-cdn.net",
                   "https://vscode.dev", "https://insiders.vscode.dev", "https://*.github.dev",
                   "https://colab.research.google.com", "https://*.googleusercontent.com")

# --- the kernel and the processes it starts (``!python train.py``) -------------------------

#: Where the browser of this notebook finds a local server's UI: ``<server URL> <UI URL>``
#: (set by ``%mlflow_server start`` and ``ui``). MLflow's printed "View run at" links are
#: rewritten to it in every MLflow process that inherits it.
UI_LINKS_ENV = "MLFLOW_MAGIC_UI_LINKS"

# --- the Jupyter server's routes (under its base URL) --------------------------------------

ROUTE = "mlflow-magic"
#: The UI of this user's server on ``<port>``: ``<base_url>mlflow-magic/proxy/<port>/``.
PROXY_PATH = f"{ROUTE}/proxy/"
#: Where the launcher's tile opens its tab.
TILE_PATH = f"{ROUTE}/tile/"
#: Lets a kernel find out that the extension's route exists.
INFO_PATH = f"{ROUTE}/api/info"
#: jupyter-server-proxy's own generic route.
GENERIC_PROXY_PATH = "proxy/"

# --- environment variables -----------------------------------------------------------------

#: The user's state folder (the list of servers): ``~/.local/state/mlflow_magic``.
STATE_DIR_ENV = "MLFLOW_MAGIC_STATE_DIR"
#: The user's cache folder (new-database templates); also handed to the server.
CACHE_DIR_ENV = "MLFLOW_MAGIC_CACHE_DIR"
#: How the browser reaches a server (a URL template with ``{port}``, or Jupyter's base URL).
PROXY_URL_ENV = "MLFLOW_MAGIC_PROXY_URL"
#: Where a start without ``--port`` begins looking for a free port.
FIRST_PORT_ENV = "MLFLOW_MAGIC_FIRST_PORT"
#: How long a server may go without a request before it sleeps, when ``--idle-timeout`` is
#: not given (``30m``, ``2h``, ``0`` for never).
IDLE_TIMEOUT_ENV = "MLFLOW_MAGIC_IDLE_TIMEOUT"
#: Marks every process of one server (a random token in each one's environment).
TOKEN_ENV = "MLFLOW_MAGIC_SERVER_TOKEN"
#: Set while a background start runs, for the processes started meanwhile
#: (``!python train.py``): "<url> <deadline> <data folder>".
STARTING_ENV = "MLFLOW_MAGIC_STARTING"

#: MLflow's login app (``mlflow server --app-name basic-auth``): a server with it asks every
#: client for a user and password, so it may listen beyond this machine.
BASIC_AUTH_APP = "basic-auth"

# The server process's own, from the manager:
#: The real ``mlflow server`` flags (the command line shows them with secrets masked).
ARGS_ENV = "MLFLOW_MAGIC_SERVER_ARGS"
#: The port the server serves, for the gate of each of its workers (set by the server
#: process itself, from its flags: whatever a request says, this is the port it came to).
SERVED_PORT_ENV = "MLFLOW_MAGIC_SERVED_PORT"
#: The server's log, which the server keeps from growing without bound.
LOG_ENV = "MLFLOW_MAGIC_LOG"
#: With ``--attached``: the kernel's pid, and the file whose presence keeps the link.
PARENT_ENV = "MLFLOW_MAGIC_PARENT_PID"
ATTACH_FILE_ENV = "MLFLOW_MAGIC_ATTACH_FILE"
#: ``--upgrade-db``: back up an older SQLite database, then upgrade it.
UPGRADE_ENV = "MLFLOW_MAGIC_UPGRADE_DB"
#: The folder's private folder, for the gate: set only for a server private to its user.
PRIVATE_DIR_ENV = "MLFLOW_MAGIC_PRIVATE_DIR"
#: The listening socket the starter bound and handed to the server (a file descriptor
#: number): the port is held from the moment it is chosen, so no other start can take it.
LISTEN_FD_ENV = "MLFLOW_MAGIC_LISTEN_FD"
#: The activity file (see ACTIVITY_FILE) the server's workers touch.
ACTIVITY_FILE_ENV = "MLFLOW_MAGIC_ACTIVITY_FILE"
#: The keeper's pid, in its server's environment: the server ends itself when its keeper is
#: gone (killed with -9), so the port is free for the next start to bring the folder back.
KEEPER_PID_ENV = "MLFLOW_MAGIC_KEEPER_PID"
#: The app the server's workers wrap, as ``mlflow server`` named it (``module:attr``, or
#: ``module:factory()`` for an app factory); set by ``server/serve.py`` for ``server/app.py``.
APP_ENV = "MLFLOW_MAGIC_APP"
#: ``asgi`` (uvicorn) or ``wsgi`` (gunicorn, waitress): how the gate wraps that app.
APP_KIND_ENV = "MLFLOW_MAGIC_APP_KIND"

# --- the server's log: what it says, and what the manager reads in it ---------------------

#: The one-process launch serves.
IN_PROCESS_MARKER = "mlflow_magic: serving in-process"
#: MLflow's own launcher serves (some flags need it, or MLflow changed shape).
OWN_LAUNCHER_MARKER = "mlflow_magic: using MLflow's own launcher"
#: An ``--attached`` server another kernel reuses: it now outlives its first kernel.
SHARED_MARKER = "mlflow_magic: shared by another kernel now, no longer attached"
#: A private server whose app cannot be put behind the gate does not start.
GATE_MISSING = "mlflow_magic: the server cannot be kept private"
#: A new SQLite database was a copy of the template ("database tables": a start phase).
DATABASE_COPIED = "mlflow_magic: new database tables copied from"
#: MLflow's (and the schema guard's) refusal of an older database.
OUT_OF_DATE = "Detected out-of-date database schema"
#: Log lines that tell which start-up phase the server is in (MLflow's and uvicorn's).
DATABASE_TABLES = "database tables"
SERVER_PROCESS_STARTED = "Started server process"
UVICORN_RUNNING = "Uvicorn running"


# --- what a push leaves on the objects it copies to another tracking server -------------

#: On every run, logged model, model version and trace a push copies: the source's id
#: (a model version: its number), so a later push finds the copy again (transfer.py).
PUSH_SOURCE_TAG = "mlflow_magic.push.source"
#: What the last pushes found equal on each target (0600, in the folder's private folder): per
#: run, its copy's id and a digest of everything a push copies. A later push reads only the
#: runs whose digest changed on the target side (``push``'s incremental cursor).
PUSH_STATE_FILE = "push.json"
#: The folder's server's own read (a GET, behind the gate, ``?experiment_id=``): per run, its
#: metric point count per key and its artifact files with sizes, from the database and the
#: artifact folder. What a push's digest needs in one request, instead of every history and
#: a listing per run (``mlflow_magic/server/summaries.py``).
RUN_SUMMARIES_PATH = "/mlflow-magic/api/run-summaries"


# --- the keeper: the process that holds a folder's port while its server is wanted ---------

#: What the keeper's state file says: its server serves (or starts); it sleeps (no server
#: process, the port held, the next connection wakes it); it waits to start its server again
#: after a crash; it gave up after the server died right after each start; it stopped.
KEEPER_RUNNING = "running"
KEEPER_SLEEPING = "sleeping"
KEEPER_RESTARTING = "restarting"
KEEPER_CRASH_LOOP = "crash loop"
KEEPER_STOPPED = "stopped"
KEEPER_STATES = (KEEPER_RUNNING, KEEPER_SLEEPING, KEEPER_RESTARTING, KEEPER_CRASH_LOOP,
                 KEEPER_STOPPED)
#: The keeper's exit code when it gives up on a server in a crash loop.
CRASH_LOOP_EXIT = 75
#: A server that dies within this many seconds of its start, having served no request,
#: died "right after" it; that many such deaths in a row are a crash loop (the keeper gives
#: up; ``status`` says so).
QUICK_DEATH = 30.0
CRASH_LOOP_AFTER = 5


# --- the sync: a folder's changes copied to a team server (``start --sync-to URL``) -------

#: One line per write the folder's server answered with success (run, experiment, model,
#: registry, trace, artifact), appended by the server, read and truncated by the sync
#: (``mlflow_magic/state/journal.py``): what changed, so a cycle reads only that.
JOURNAL_FILE = "journal"
#: The sync's state (0600): how far in the journal it is, the map of this folder's ids to
#: the team server's, and what ``status`` shows (in sync, behind, the last error).
SYNC_STATE_FILE = "sync.json"
#: The journal, for the server's workers: set only when the folder syncs.
JOURNAL_ENV = "MLFLOW_MAGIC_JOURNAL"
#: The team server's URL, for the sync process (in the keeper's 0600 spec, never on a
#: command line: it may hold a password).
SYNC_TO_ENV = "MLFLOW_MAGIC_SYNC_TO"
#: What the sync says it is doing.
SYNC_IN_SYNC = "in sync"
SYNC_BEHIND = "behind"
SYNC_WAITING = "waiting"
