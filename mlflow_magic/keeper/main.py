"""``python -m mlflow_magic.keeper.main <spec>``: hold a folder's port, run its server on it.

The spec (``contract.KEEPER_SPEC_FILE``, 0600, written by the starter) says what to run:
the server's command line and environment, the idle timeout, where the activity and state
files are, for ``--attached`` the kernel to stop with, and for ``--sync-to`` the sync
process (:mod:`mlflow_magic.syncer.main`), which runs next to the server and ends with it.
The listening socket comes inherited, its number in ``contract.LISTEN_FD_ENV``; the server
gets the very same socket.

Signals: SIGTERM or SIGINT stop the server and the keeper (``stop``); SIGUSR1 says the
server answered once (from then on a crash is healed; before, an early exit is the start's
failure, reported by the starter); SIGHUP reads the spec again and replaces the server on
the same socket (``restart``: the port is never free in between); SIGUSR2, from a server
whose web server cannot take a handed-over socket and binds the port itself (waitress),
lets go of the port (the keeper then only heals: it cannot sleep without it).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import contract
from ..state import owned

#: The waits before each start again after a crash (the last one repeats).
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
#: How long a server gets to end on SIGTERM before its whole group is killed.
STOP_GRACE = 10.0
#: How often the keeper looks at its server, the activity file and an attached kernel.
TICK = 1.0
#: How many looks, half a second apart, an idle server gets to show no connection.
IDLE_LOOKS = 4
#: TCP's ESTABLISHED in /proc/net/tcp: connections accepted, or waiting in the backlog.
_ESTABLISHED = "01"


@dataclass
class Spec:
    """What the keeper runs, from the spec file."""

    argv: list[str]
    env: dict[str, str]
    port: int
    idle_timeout: float
    activity_file: str
    state_file: str
    attached_pid: int | None = None
    attach_file: str | None = None
    #: ``--sync-to``: the sync process's command line and environment
    sync: dict | None = None

    @classmethod
    def read(cls, path: Path) -> Spec:
        """The spec its starter wrote, only if the file and its folder are this user's alone
        (:mod:`~mlflow_magic.state.owned`): a spec someone else planted names their program
        and environment."""
        data = json.loads(owned.read_owned(path))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Keeper:
    """One folder's port, and the server process running on it now (if any)."""

    def __init__(self, spec_path: Path, listen_fd: int) -> None:
        self.spec_path = spec_path
        self.spec = Spec.read(spec_path)
        self.fd = listen_fd
        self.sock = socket.socket(fileno=listen_fd)  # held until the keeper ends
        self.child: subprocess.Popen | None = None
        self.child_started = 0.0
        self.started_at = 0.0
        self.armed = False
        self.stopping = False
        self.reload = False
        self.holding = True
        self.quick_deaths = 0
        self.restarts = 0
        self.syncer: subprocess.Popen | None = None
        self.sync_failures = 0
        self.sync_after = 0.0
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(wake_w)
        for signum, handler in ((signal.SIGTERM, self._stop), (signal.SIGINT, self._stop),
                                (signal.SIGUSR1, self._arm), (signal.SIGHUP, self._reload),
                                (signal.SIGUSR2, self._release)):
            signal.signal(signum, handler)

    # --- signals ------------------------------------------------------------------------

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _arm(self, *_: object) -> None:
        self.armed = True

    def _reload(self, *_: object) -> None:
        self.reload = True

    def _release(self, *_: object) -> None:
        if self.holding:
            self.holding = False
            self.sock.close()

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit code says why the keeper ended."""
        self.start_server()
        while True:
            if self.stopping:
                return self.finish(0)
            if self.reload:  # a restart: until the new server answers, an exit is a failure
                self.reload = self.armed = False
                self.spec = Spec.read(self.spec_path)
                self.stop_sync()
                self.stop_server()
                self.start_server()
                continue
            if self.attached_kernel_gone():
                return self.finish(0)
            code = self.child.poll() if self.child is not None else None
            if code is not None:
                outcome = self.server_ended(code)
                if outcome is not None:
                    return outcome
                continue
            if self.idle():
                self.stop_server()
                if not self.sleep():
                    return self.finish(0)
                self.start_server()
                continue
            self.tend_sync()
            self.wait(TICK)

    def server_ended(self, code: int) -> int | None:
        """The server exited on its own: heal it, give up, or (before it ever answered) end
        with its code, which the starter reports. None: go on."""
        quick = time.monotonic() - self.child_started < contract.QUICK_DEATH \
            and not self.served()
        self.sweep()
        if not self.armed:
            return self.finish(code if code >= 0 else 128 - code, contract.KEEPER_STOPPED,
                               last_exit=code)
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        if self.quick_deaths >= contract.CRASH_LOOP_AFTER:
            return self.finish(contract.CRASH_LOOP_EXIT, contract.KEEPER_CRASH_LOOP,
                               last_exit=code)
        self.write_state(contract.KEEPER_RESTARTING, last_exit=code)
        self.wait(BACKOFF[min(max(self.quick_deaths, 1), len(BACKOFF)) - 1])
        if self.stopping:
            return self.finish(0)
        self.restarts += 1
        self.start_server()
        return None

    def finish(self, code: int, state: str = contract.KEEPER_STOPPED, **extra: object) -> int:
        """End the server and the keeper; the port is free once this returns."""
        self.stop_sync()
        self.stop_server()
        self.write_state(state, **extra)
        if self.holding:
            self.sock.close()
        return code

    # --- the server ---------------------------------------------------------------------

    def start_server(self) -> None:
        """The server, on the held socket, as the leader of a process group of its own (so its
        workers end with it)."""
        env = {**self.spec.env, contract.KEEPER_PID_ENV: str(os.getpid())}
        if self.holding:
            env[contract.LISTEN_FD_ENV] = str(self.fd)
        else:
            env.pop(contract.LISTEN_FD_ENV, None)
        self.child = subprocess.Popen(self.spec.argv, env=env,
                                      pass_fds=(self.fd,) if self.holding else (),
                                      stdin=subprocess.DEVNULL, preexec_fn=os.setpgrp)
        self.child_started = time.monotonic()
        self.touch()  # a new server is as good as a request: its idle time starts now
        self.started_at = self._last_activity()
        self.write_state(contract.KEEPER_RUNNING)

    def stop_server(self) -> None:
        """SIGTERM the server's group, SIGKILL what is left after :data:`STOP_GRACE`."""
        if self.child is None:
            return
        if self.child.poll() is None:
            self.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while self.child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        self.sweep()

    def sweep(self) -> None:
        """Kill what is left of the server's group (workers of a leader that died) and reap."""
        assert self.child is not None
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.wait(timeout=5)
        self.child = None

    def signal_group(self, signum: int) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, signum)

    # --- the sync (``--sync-to``) ---------------------------------------------------------

    def tend_sync(self) -> None:
        """Run the sync next to a running server: started again after it ended (at once
        if it ended because everything was copied, after a backoff if it failed)."""
        if not self.spec.sync or self.child is None or self.stopping:
            return
        if self.syncer is not None and not self.sync_ended():
            return
        if time.monotonic() < self.sync_after:
            return
        sync = self.spec.sync
        self.syncer = subprocess.Popen(sync["argv"], env=sync["env"],
                                       stdin=subprocess.DEVNULL, preexec_fn=os.setpgrp)

    def sync_ended(self) -> bool:
        """Reap a sync that ended (True), and when to start the next."""
        if self.syncer is None or self.syncer.poll() is None:
            return False
        failed = self.syncer.returncode != 0
        self.sync_failures = self.sync_failures + 1 if failed else 0
        self.sync_after = time.monotonic() + (
            BACKOFF[min(self.sync_failures, len(BACKOFF)) - 1] if failed else 0.0)
        self.syncer = None
        return True

    def stop_sync(self) -> None:
        """SIGTERM the sync (any moment is a safe one for it), SIGKILL after a grace."""
        if self.syncer is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.syncer.pid, signal.SIGTERM)
        try:
            self.syncer.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.syncer.pid, signal.SIGKILL)
            self.syncer.wait(timeout=5)
        self.syncer = None

    # --- idle and sleep -----------------------------------------------------------------

    def touch(self) -> None:
        with contextlib.suppress(OSError):
            Path(self.spec.activity_file).touch()

    def _last_activity(self) -> float:
        try:
            return os.stat(self.spec.activity_file).st_mtime
        except OSError:
            return 0.0

    def served(self) -> bool:
        """The server answered a request that counts since it started (so it was no crash
        right after its start, whatever killed it later)."""
        return self._last_activity() > self.started_at

    def idle(self) -> bool:
        """No request for the idle timeout, and no connection open or waiting."""
        if self.spec.idle_timeout <= 0 or self.child is None or not self.holding:
            return False
        try:
            last = os.stat(self.spec.activity_file).st_mtime
        except OSError:
            last = 0.0
        if time.time() - last < self.spec.idle_timeout:
            return False
        # A request in flight (an upload), or waiting to be accepted, keeps it awake; a short
        # probe (status, the panel) does not: one of a few looks must find no connection.
        for _ in range(IDLE_LOOKS):
            if not connections_on(self.spec.port):
                return True
            self.wait(0.5)
        return False

    def sleep(self) -> bool:
        """Hold the port with no server until a connection waits in the backlog (True), or
        until the keeper is stopped (False)."""
        self.write_state(contract.KEEPER_SLEEPING)
        while not self.stopping:
            if self.attached_kernel_gone():
                return False
            ready, _, _ = select.select([self.fd, self._wake_r], [], [], TICK)
            self.drain_wakeups()
            self.sync_ended()  # it ends by itself once everything is copied
            if self.fd in ready:
                return True
        return False

    # --- the rest -----------------------------------------------------------------------

    def attached_kernel_gone(self) -> bool:
        """``--attached``: the kernel it belongs to exited, and no other kernel shares it."""
        spec = self.spec
        if spec.attached_pid is None or not spec.attach_file:
            return False
        if not os.path.exists(spec.attach_file):  # another kernel reused it: shared now
            print(contract.SHARED_MARKER, file=sys.stderr, flush=True)
            spec.attached_pid = None
            return False
        try:
            os.kill(spec.attached_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return _zombie(spec.attached_pid)

    def wait(self, seconds: float) -> None:
        """Sleep, woken early by a signal."""
        select.select([self._wake_r], [], [], seconds)
        self.drain_wakeups()

    def drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass

    def write_state(self, state: str, **extra: object) -> None:
        """Say what the keeper does (atomically: a reader never sees half of it)."""
        data = {"state": state, "since": time.time(), "keeper": os.getpid(),
                "server": self.child.pid if self.child is not None else None,
                "restarts": self.restarts, **extra}
        path = Path(self.spec.state_file)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)


def connections_on(port: int) -> bool:
    """A TCP connection to ``port`` of this machine is open or waits to be accepted (Linux:
    ``/proc/net/tcp``; elsewhere unknown, so never idle on that count)."""
    wanted = f":{port:04X}"
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                found_table = True
                for line in fh:
                    fields = line.split(None, 4)
                    if fields[3] == _ESTABLISHED and fields[1].endswith(wanted):
                        return True
        except OSError:
            continue
    return not found_table


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    os.umask(0o077)  # everything the keeper writes is its user's alone
    return Keeper(Path(args[0]), int(os.environ[contract.LISTEN_FD_ENV])).run()


if __name__ == "__main__":
    sys.exit(main())
