"""jupyter-server-proxy entry point: the MLflow tile in JupyterLab's launcher.

The tile opens ``mlflow-magic/tile/`` (:mod:`mlflow_magic.jupyter.extension`), which
reuses or starts the folder's server and shows it through the loopback route; ``/mlflow/`` itself
stays a plain proxied view of the same server (forwarder.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..contract import PROXY_PATH, TILE_PATH

ICON = Path(__file__).with_name("icons") / "mlflow.svg"

#: MLflow takes seconds to start on a fresh folder; jupyter-server-proxy's default of 5 s
#: gives up long before that.
START_TIMEOUT = 120


def setup_mlflow() -> dict:
    """The ``mlflow`` named server: ``/mlflow/`` shows the UI of ``$MLFLOW_PATH``'s server.

    The forwarder listens on a Unix socket in a folder of its own (0700) that
    jupyter-server-proxy makes: no port another user could take or reach. It sees the
    browser's Host and Origin, so it can tell a same-origin write from a cross-site one.
    Its settings (``c.MlflowMagic.*``, the route it sends the browser to) are its
    arguments.
    """
    from jupyter_server.utils import url_path_join

    from .config import from_server, server_app

    app = server_app()
    route = url_path_join(app.base_url if app is not None else "/", PROXY_PATH)
    return {
        "command": [sys.executable, "-m", "mlflow_magic.jupyter.forwarder",
                    "--unix-socket", "{unix_socket}", "--route", route,
                    *from_server(app).argv()],
        "unix_socket": True,
        "timeout": START_TIMEOUT,
        "absolute_url": False,
        "new_browser_tab": False,
        "launcher_entry": {"enabled": True, "title": "MLflow", "icon_path": str(ICON),
                           "path_info": TILE_PATH},
    }
