"""A stand-in for ``mlflow server``: starts in milliseconds and misbehaves on request.

The failure paths of a start (early exit, no answer, a port taken meanwhile) do
not need MLflow, only a process that behaves like a failing server; TensorBoard's
tests do the same with a stub binary. The behaviour comes from ``STUB_MODE``:

- ``exit:<code>:<message>``: print the message (as a log line) and exit with the code
- ``hang``: run, never answer
- ``slow:<seconds>``: as ``serve``, after that long (a server still starting)
- ``serve``: answer ``/health`` (OK) and ``/version`` like MLflow on ``--port`` (on the
  socket a start handed over in ``MLFLOW_MAGIC_LISTEN_FD``, as the real server does)
- ``binds-itself:<seconds>``: as a web server that cannot take a handed-over socket: lets go
  of it, waits, then binds the port itself (and exits "address already in use" if another
  program took it meanwhile)
- ``/slow``: answers after 30 s (a stuck request), in any serving mode
- ``forbidden``: as ``serve``, but ``/version`` answers 403 (a host or permission refusal)

With ``STUB_RECORD=<file>`` every request it gets is appended to that file as a
JSON line (method, path, headers): what a lure learnt.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def _record(self) -> None:
        record = os.environ.get("STUB_RECORD")
        if record:
            with open(record, "a") as fh:
                fh.write(json.dumps({"method": self.command, "path": self.path,
                                     "headers": dict(self.headers)}) + "\n")

    def do_POST(self) -> None:
        self._record()
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST

    def do_GET(self) -> None:
        self._record()
        if self.path == "/slow":
            time.sleep(30)
        body = {"/health": b"OK", "/version": b"0.0-stub"}.get(self.path)
        if self.path == "/version" and os.environ.get("STUB_MODE") == "forbidden":
            self.send_response(403)
            self.end_headers()
            return
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    mode = os.environ.get("STUB_MODE", "serve")
    if mode.startswith("exit:"):
        _, code, message = mode.split(":", 2)
        print(message, flush=True)
        sys.exit(int(code))
    if mode == "hang":
        while True:
            time.sleep(1)
    if mode.startswith("slow:"):
        time.sleep(float(mode.split(":", 1)[1]))
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    fd = os.environ.get("MLFLOW_MAGIC_LISTEN_FD")  # the socket a start holds for us
    if mode.startswith("binds-itself:") and fd is not None:
        os.close(int(fd))
        fd = None
        keeper = os.environ.get("MLFLOW_MAGIC_KEEPER_PID")
        if keeper:  # as mlflow_magic's launcher does for such a server: the keeper lets go
            os.kill(int(keeper), signal.SIGUSR2)
        time.sleep(float(mode.split(":", 1)[1]))
        try:
            probe = socket.socket()
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.close()
        except OSError:
            print("[Errno 98] error while attempting to bind: address already in use",
                  flush=True)
            sys.exit(1)
    host = args[args.index("--host") + 1] if "--host" in args else "127.0.0.1"
    server_class = http.server.ThreadingHTTPServer
    if ":" in host:  # an IPv6 address: [::1]
        server_class = type("V6Server", (server_class,), {"address_family": socket.AF_INET6})
    server = server_class((host, port), Handler, bind_and_activate=fd is None)
    if fd is not None:
        server.socket.close()
        server.socket = socket.socket(fileno=int(fd))
    print("Uvicorn running (stub)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
