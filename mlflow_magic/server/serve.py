"""Run ``mlflow server`` in one process: ``python -m mlflow_magic.server.serve [flags]``.

``mlflow server`` imports MLflow, prepares the database, then starts uvicorn
as a *new* Python process that imports MLflow all over again, and leaves the
first process idling at ~250 MB. Here MLflow's own CLI command runs unchanged
(every flag, check and migration is MLflow's), but the uvicorn command it
builds runs in this very process, reusing the modules already imported: one
process and one import instead of two, about half the start time and memory.

This relies on one internal detail of MLflow: ``mlflow.server._run_server``
launches ``[python, -m, uvicorn, ...]`` through the module-level
``_exec_cmd``. If a release changes that, the command runs as a subprocess
exactly as MLflow intends (slower, never broken), a warning goes to the log,
and ``tests/test_serve.py`` fails loudly.

``mlflow.server`` configures its Flask app from environment variables when it
is first imported, which here is before ``_run_server`` sets them. So the
settings read at import time come in through the environment before that
import (mlflow_magic passes allowed hosts and CORS origins that way), and the
few ``mlflow server`` flags that only work through import-time configuration
(static prefix, Prometheus, other web servers, dev mode, auth apps) make this
launcher step aside for MLflow's own.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from ..contract import (
    APP_ENV,
    APP_KIND_ENV,
    ARGS_ENV,
    ATTACH_FILE_ENV,
    CACHE_DIR_ENV,
    GATE_MISSING,
    IN_PROCESS_MARKER,
    KEEPER_PID_ENV,
    LISTEN_FD_ENV,
    LOG_ENV,
    OWN_LAUNCHER_MARKER,
    PARENT_ENV,
    PRIVATE_DIR_ENV,
    SERVED_PORT_ENV,
    SHARED_MARKER,
    UPGRADE_ENV,
)
from ..internals import mlflow_exec_cmd, replace_mlflow_exec_cmd

ROTATE_EVERY = 5.0
#: The keeper that runs this server (its pid, as the environment said it).
_keeper_pid: str | None = None

#: Flags (and the environment variables behind them) that MLflow applies when
#: ``mlflow.server`` is imported in a fresh uvicorn/gunicorn process.
OWN_LAUNCHER_FLAGS = {
    "--expose-prometheus": "MLFLOW_EXPOSE_PROMETHEUS",
    "--gunicorn-opts": "MLFLOW_GUNICORN_OPTS",
    "--waitress-opts": None,
    "--dev": None,
    "--app-name": None,
    "--x-frame-options": None,
    "--disable-security-middleware": None,
}


def needs_own_launcher(argv: Sequence[str], environ: dict[str, str]) -> str | None:
    """The flag that requires MLflow's own two-process launch, if any."""
    for flag, env in OWN_LAUNCHER_FLAGS.items():
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            return flag
        if env and environ.get(env):
            return env
    return None


class InProcessServer:
    """Stands in for the ``Popen`` of the uvicorn command MLflow would spawn.

    ``_run_server`` only needs ``pid``, ``poll``, ``send_signal`` and ``wait``;
    ``wait`` is where uvicorn actually runs, in the main thread, after MLflow has
    launched the optional job runner (which watches ``pid``, i.e. this process).
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.args = list(argv)
        self.env = env
        self.pid = os.getpid()
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """A signal before uvicorn took over: end now, nothing is serving yet."""
        raise SystemExit(128 + signum)

    def wait(self, timeout: float | None = None) -> int:
        os.environ.update(self.env)
        # uvicorn installs its own SIGTERM/SIGINT handlers for a graceful shutdown while it
        # serves; before that, the default action (exit) is right.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        import uvicorn.main

        print(IN_PROCESS_MARKER, flush=True)
        try:
            uvicorn.main.main(args=self.args[3:], prog_name="uvicorn", standalone_mode=False)
        finally:
            self.returncode = 0
        return 0


def _is_uvicorn_command(cmd: object) -> bool:
    return (isinstance(cmd, (list, tuple)) and len(cmd) > 3
            and list(cmd[1:3]) == ["-m", "uvicorn"])


def install(in_process: bool = True, listen_fd: int | None = None) -> bool:
    """Route MLflow's server launch through :mod:`mlflow_magic.server.app`, (with
    ``in_process``) its uvicorn into this process, and onto ``listen_fd`` (the socket the
    starter holds); False if MLflow changed shape."""
    original = mlflow_exec_cmd()
    if original is None:
        print(f"{OWN_LAUNCHER_MARKER}: mlflow.server._exec_cmd not found (slower)",
              file=sys.stderr, flush=True)
        _refuse_if_private("mlflow.server._exec_cmd is gone")
        return False

    def exec_cmd(cmd, *args, extra_env=None, synchronous=True, **kwargs):
        served = with_served_app(cmd, dict(extra_env or {}))
        if served is None:
            _refuse_if_private(f"its web server command is {list(cmd)[:4]}")
        cmd, extra_env = served or (cmd, dict(extra_env or {}))
        cmd = without_forwarding(cmd)
        cmd, on_fd = on_inherited_socket(cmd, listen_fd)
        if on_fd:  # MLflow's own launcher starts it as a process of its own: hand it over
            kwargs["pass_fds"] = (*kwargs.get("pass_fds", ()), listen_fd)
        if in_process and _is_uvicorn_command(cmd) and not synchronous and not args:
            return InProcessServer(cmd, extra_env)
        if in_process:
            print(f"{OWN_LAUNCHER_MARKER}: unexpected server command", file=sys.stderr,
                  flush=True)
        return original(cmd, *args, extra_env=extra_env, synchronous=synchronous, **kwargs)

    replace_mlflow_exec_cmd(exec_cmd)
    return True


def _refuse_if_private(why: str) -> None:
    """A private server whose app cannot be put behind the gate does not start at all."""
    if os.environ.get(PRIVATE_DIR_ENV):
        print(f"{GATE_MISSING}: {why}. The server was not started: it would be open to every "
              "user of this machine. Start it as a team server (`--host 0.0.0.0 --app-name "
              "basic-auth`) or without the arguments after `--` that change its web server.",
              file=sys.stderr, flush=True)
        raise SystemExit(1)


def without_forwarding(cmd: list) -> list:
    """The web server's command with forwarding headers ignored.

    uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 by default and puts its first entry
    in place of the client's address, before any app code runs. On a shared machine every
    local user connects from 127.0.0.1, so any of them could name the address the gate asks
    the kernel about. The client's address must be the socket's: ``--no-proxy-headers``
    here, and for gunicorn (and uvicorn's own default) an empty ``FORWARDED_ALLOW_IPS``
    (:func:`main`). waitress trusts no proxy unless told to.
    """
    if _is_uvicorn_command(cmd) and "--no-proxy-headers" not in cmd:
        return [*cmd[:3], "--no-proxy-headers", *cmd[3:]]
    return list(cmd)


def on_inherited_socket(cmd: list, fd: int | None) -> tuple[list, bool]:
    """The web server's command serving the socket ``fd`` instead of binding host and port,
    and whether it does.

    uvicorn takes ``--fd``, gunicorn ``-b fd://N``. A server that cannot (waitress) binds
    for itself: the socket is closed first, so the port is free for it a moment later.
    """
    if fd is None or len(cmd) < 3 or cmd[1] != "-m":
        return cmd, False
    if cmd[2] == "uvicorn":
        out, skip = [], False
        for i, arg in enumerate(cmd):
            if skip:
                skip = False
                continue
            if arg in ("--host", "--port") and i + 1 < len(cmd):
                skip = True
                continue
            out.append(arg)
        return [*out[:3], "--fd", str(fd), *out[3:]], True
    if cmd[2] == "gunicorn" and "-b" in cmd:
        return [f"fd://{fd}" if i and cmd[i - 1] == "-b" else arg
                for i, arg in enumerate(cmd)], True
    os.close(fd)
    release_keepers_port()
    return cmd, False


def release_keepers_port() -> None:
    """This server binds the port itself: its keeper lets go of the socket it holds."""
    keeper = os.environ.get(KEEPER_PID_ENV) or _keeper_pid
    if keeper and keeper.isdigit():
        with contextlib.suppress(OSError):
            os.kill(int(keeper), signal.SIGUSR2)


#: Web servers whose command names the app last: (module, flag that marks a factory).
_APP_SERVERS = {"uvicorn": ("asgi", "--factory"), "gunicorn": ("wsgi", None),
                "waitress": ("wsgi", "--call")}


def with_served_app(cmd: object, env: dict[str, str]) -> tuple[list, dict[str, str]] | None:
    """The server command with :mod:`mlflow_magic.server.app` as its app (the original and
    its kind in ``env``), so every worker serves behind the gate and the trace renderer
    works under any prefix; None for a command of another shape.

    A factory (uvicorn's ``--factory``, waitress's ``--call``, gunicorn's ``f()``) is
    called by ``served_app`` itself, so the flag goes.
    """
    if not isinstance(cmd, (list, tuple)) or len(cmd) < 4 or cmd[1] != "-m" \
            or cmd[2] not in _APP_SERVERS:
        return None
    kind, factory_flag = _APP_SERVERS[str(cmd[2])]
    target = str(cmd[-1])
    if not re.fullmatch(r"mlflow[\w.]*:\w+(\(\))?", target):
        return None
    rest = list(cmd[:-1])
    if factory_flag and factory_flag in rest:
        rest.remove(factory_flag)
        target = target.removesuffix("()") + "()"
    return ([*rest, "mlflow_magic.server.app:app"],
            {**env, APP_ENV: target, APP_KIND_ENV: kind})


def watch_parent(pid: int, attach_file: str | None, interval: float = 1.0) -> None:
    """For ``--attached``: end this server when the kernel that started it is gone.

    Only while ``attach_file`` exists: once another kernel reuses the server,
    the manager removes the file and the server is shared (it keeps running).
    """
    try:
        parent = psutil.Process(pid)
        born = parent.create_time()
    except psutil.Error:
        os.killpg(os.getpgrp(), signal.SIGTERM)
        return

    def loop() -> None:
        while True:
            time.sleep(interval)
            if attach_file and not os.path.exists(attach_file):
                print(SHARED_MARKER, file=sys.stderr, flush=True)
                return
            try:
                alive = parent.is_running() and parent.create_time() == born and (
                    parent.status() != psutil.STATUS_ZOMBIE)
            except psutil.Error:
                alive = False
            if not alive:
                os.killpg(os.getpgrp(), signal.SIGTERM)
                return

    threading.Thread(target=loop, name="mlflow-magic-parent-watch", daemon=True).start()


def end_with_keeper(keeper_pid: int, interval: float = 1.0) -> None:
    """End this server when its keeper is gone (killed with -9: nothing else stops it), so
    the port is free and the next call for the folder starts it again with a keeper."""

    def loop() -> None:
        while os.getppid() == keeper_pid:
            time.sleep(interval)
        os.killpg(os.getpgrp(), signal.SIGTERM)

    threading.Thread(target=loop, name="mlflow-magic-keeper-watch", daemon=True).start()


def keep_log_small(path: str, interval: float = ROTATE_EVERY) -> None:
    """Rotate the server's own log while it runs (see :mod:`mlflow_magic.state.logfile`)."""
    from pathlib import Path

    from ..state.logfile import rotate

    def loop() -> None:
        while True:
            time.sleep(interval)
            rotate(Path(path))

    threading.Thread(target=loop, name="mlflow-magic-log-rotation", daemon=True).start()


def server_args(argv: Sequence[str]) -> list[str]:
    """The real flags: from the environment when the manager started us, else argv."""
    import json

    real = os.environ.pop(ARGS_ENV, None)
    return list(json.loads(real)) if real else list(argv)


def flag_value(args: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in ``mlflow server`` flags (``--port 5000`` or ``--port=5000``)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the server process."""
    # Everything the server writes (database, artifacts, its own logs) is its user's alone.
    os.umask(0o077)
    # No web server of this process or its workers trusts a forwarding header from anyone
    # (see without_forwarding): gunicorn and uvicorn read their default from here.
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    parent = os.environ.pop(PARENT_ENV, None)
    attach_file = os.environ.pop(ATTACH_FILE_ENV, None)
    keeper = os.environ.pop(KEEPER_PID_ENV, None)
    if keeper:  # the keeper watches an --attached kernel itself
        global _keeper_pid
        _keeper_pid = keeper
        end_with_keeper(int(keeper))
    elif parent:
        watch_parent(int(parent), attach_file)
    log = os.environ.pop(LOG_ENV, None)
    if log:
        keep_log_small(log)
    # The socket the starter bound: this process holds the port until uvicorn serves it.
    fd = os.environ.pop(LISTEN_FD_ENV, None)
    listen_fd = int(fd) if fd and fd.isdigit() else None
    args = server_args(sys.argv[1:] if argv is None else argv)
    port = flag_value(args, "--port")
    if port is not None:  # the gate of every worker asks the kernel about this port
        os.environ[SERVED_PORT_ENV] = port
    from .newdb import seed
    from .schema import guard

    backend = os.environ.get("MLFLOW_BACKEND_STORE_URI")
    guard(backend, os.environ.pop(UPGRADE_ENV, "") == "1")
    cache = os.environ.pop(CACHE_DIR_ENV, None)
    seed(backend, Path(cache) if cache else None)
    reason = needs_own_launcher(args, dict(os.environ))
    if reason:
        print(f"{OWN_LAUNCHER_MARKER}: {reason} needs it", file=sys.stderr, flush=True)
    else:
        # As in MLflow's own uvicorn process, so mlflow.server sets up its Flask app as a
        # server (security middleware included) when it is imported.
        import uvicorn  # noqa: F401
    install(in_process=not reason, listen_fd=listen_fd)
    from mlflow.cli import cli

    cli.main(args=["server", *args], prog_name="mlflow")


if __name__ == "__main__":
    main()
