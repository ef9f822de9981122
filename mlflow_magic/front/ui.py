"""Where the browser finds the MLflow UI, and the inline view of it.

In Jupyter the UI is shown through jupyter-server-proxy, ``<base_url>proxy/<port>/``:
the same origin as the notebook page, which MLflow's default
``X-Frame-Options: SAMEORIGIN`` requires for an iframe, and reachable from a
browser that cannot reach the kernel's 127.0.0.1 (JupyterHub, remote servers).
VS Code and Colab frame their outputs from a page of another site: the UI is framed on the
server's own address (VS Code) or through Colab's port proxy, with a kernel pass in the
path (:mod:`mlflow_magic.state.passes`), since such a frame may keep no cookie. Elsewhere
(plain IPython, a terminal) a direct link is all that works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from ..contract import GENERIC_PROXY_PATH, INFO_PATH, LOGIN_TTL, PROXY_PATH, PROXY_URL_ENV
from .context import COLAB, VSCODE, front_end

DEFAULT_HEIGHT = 650

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UiLocation:
    """The UI's address for the browser (``url``) and for this machine (``direct_url``)."""

    url: str
    direct_url: str
    #: an iframe can show the UI (a Jupyter proxy, or a front end that frames it itself)
    inline: bool
    #: the browser reaches the server by a way that adds no key (jupyter-server-proxy's
    #: generic route, a direct link): a private server's UI then needs a one-time login
    needs_login: bool = True
    #: the UI is framed by a page of another site (VS Code, Colab), which may keep no
    #: cookie: its URL carries a kernel pass instead of a login
    needs_pass: bool = False
    #: a full address of :attr:`url` for links printed as text (MLflow's "View run at"),
    #: where ``url`` is a path of the notebook page's own origin; None where none is known
    full_url: str | None = None

    @property
    def printed_url(self) -> str | None:
        """What MLflow's printed links should lead to: a full address, else the route (or
        None: as MLflow prints them). A way in that needs a one-time login prints none."""
        if self.needs_login:
            return self.url if self.inline else None
        if self.url.startswith(("http://", "https://")):
            return self.url
        return self.full_url or (self.url if self.inline else None)


def ui_location(direct_url: str, proxy_url: str | None = None,
                environ: Mapping[str, str] | None = None) -> UiLocation:
    """Find how the browser reaches ``direct_url``, without asking the user.

    In order: an explicit ``proxy_url`` / ``$MLFLOW_MAGIC_PROXY_URL`` (``{port}`` is
    replaced; without it, it is the Jupyter base URL), ``$JUPYTERHUB_SERVICE_PREFIX``,
    the running Jupyter server that owns this kernel; else the direct URL.
    """
    environ = os.environ if environ is None else environ
    direct = direct_url.rstrip("/") + "/"
    parts = urlsplit(direct)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    template = proxy_url or environ.get(PROXY_URL_ENV)
    if template:
        if "{port}" in template:
            return _proxied(template.replace("{port}", str(port)), direct)
        return _proxied(f"{_slash(template)}{GENERIC_PROXY_PATH}{port}/", direct)
    hub_prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if hub_prefix:
        route = _proxy_route(_hub_server_url(environ), environ.get("JUPYTERHUB_API_TOKEN", ""))
        public = environ.get("JUPYTERHUB_PUBLIC_URL", "")  # the hub's public_url, if set
        return dataclasses.replace(
            _proxied(f"{_slash(hub_prefix)}{route or GENERIC_PROXY_PATH}{port}/", direct),
            full_url=f"{_slash(public)}{route or GENERIC_PROXY_PATH}{port}/"
            if public.startswith(("http://", "https://")) else None)
    found = jupyter_proxy(environ)
    if found is not None:
        base, route, server_url = found
        return dataclasses.replace(_proxied(f"{base}{route}{port}/", direct),
                                   full_url=f"{_slash(server_url)}{route}{port}/"
                                   if server_url.startswith("http") else None)
    embedder = front_end(environ)
    if embedder == COLAB:
        colab = colab_proxy_url(port)
        if colab:
            return UiLocation(_slash(colab), direct, True, needs_login=False, needs_pass=True)
    if embedder == VSCODE:
        return UiLocation(direct, direct, True, needs_login=False, needs_pass=True)
    return UiLocation(direct, direct, False)


def colab_proxy_url(port: int) -> str | None:
    """The https address at which Colab's proxy forwards to ``port`` of the kernel's
    machine (``google.colab.kernel.proxyPort``, as TensorBoard and Aim frame it); None if
    Colab does not answer."""
    try:
        from google.colab import output  # type: ignore[import-untyped]

        url = output.eval_js(f"google.colab.kernel.proxyPort({int(port)}, {{'cache': true}})")
    except Exception:  # not Colab after all, or its front end is gone
        _log.debug("mlflow_magic: no Colab proxy for port %s", port, exc_info=True)
        return None
    return url if isinstance(url, str) and url.startswith("https://") else None


def _proxied(url: str, direct: str) -> UiLocation:
    """A location through a Jupyter proxy; only our own route adds the folder's key."""
    return UiLocation(_slash(url), direct, True, needs_login=PROXY_PATH not in url)


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"




def jupyter_proxy(environ: Mapping[str, str] | None = None) -> tuple[str, str, str] | None:
    """(base URL, proxy route, the server's own full URL) of the Jupyter server that
    started this kernel, if it proxies.

    The kernel's parent is found from ``JPY_PARENT_PID`` (set by jupyter_client) or
    the process tree, and matched against the running servers. The server is asked
    which route it has, so a Jupyter without jupyter-server-proxy gets a direct
    link, not a broken iframe.
    """
    environ = os.environ if environ is None else environ
    servers = {info.get("pid"): info for info in _running_servers()}
    if not servers:
        return None
    candidates = []
    if environ.get("JPY_PARENT_PID", "").isdigit():
        candidates.append(int(environ["JPY_PARENT_PID"]))
    with contextlib.suppress(psutil.Error):
        candidates += [p.pid for p in psutil.Process().parents()]
    for pid in candidates:
        info = servers.get(pid)
        if info is not None:
            route = _proxy_route(info.get("url", ""), info.get("token", ""))
            if route is not None:
                return _slash(info.get("base_url") or "/"), route, info.get("url", "")
    return None


def _running_servers() -> list[dict]:
    """The Jupyter servers running for this user, from their runtime files.

    What ``jupyter_server.serverapp.list_running_servers`` reads, read here:
    importing ``jupyter_server.serverapp`` in a kernel costs 3-12 s on this
    stack (jupyter_events -> jsonschema compiles RFC 3987 grammars at import),
    which the first ``%mlflow_server start`` of every kernel would pay.
    """
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return []
    found = []
    for info_file in Path(jupyter_runtime_dir()).glob("jpserver-*.json"):
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # being written, or gone
            continue
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and pid > 0 and psutil.pid_exists(pid):
            found.append(info)
    return found


def _hub_server_url(environ: Mapping[str, str]) -> str:
    """This single-user server's own address under JupyterHub (its bind URL)."""
    url = environ.get("JUPYTERHUB_SERVICE_URL", "")
    return url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")


def _proxy_route(server_url: str, token: str) -> str | None:
    """Our extension's route if the server has it, else jupyter-server-proxy's, else None."""
    if not server_url:
        return None
    base = server_url.rstrip("/")
    # The extension's route is preferred: it adds the folder's key and presents a loopback
    # Host to MLflow, so the UI works behind any public host name.
    for path, route in ((INFO_PATH, PROXY_PATH),
                        ("server-proxy/servers-info", GENERIC_PROXY_PATH)):
        req = urllib.request.Request(f"{base}/{path}",
                                     headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return route
        except OSError:  # not this Jupyter's route, or the server is busy: try the next
            _log.debug("mlflow_magic: no UI route at %s/%s", base, path, exc_info=True)
            continue
    return None


def deep_link(experiment_id: str | None = None, run_id: str | None = None,
              view: str | None = None) -> str:
    """The UI's hash route (MLflow uses hash routing) for an experiment, a run or a view.

    ``#/experiments/<id>`` is MLflow 3's GenAI overview; people tracking training
    runs want the runs table, so that is the default for an experiment.
    """
    if view == "models":
        return "#/models"
    if experiment_id and run_id:
        return f"#/experiments/{experiment_id}/runs/{run_id}"
    if experiment_id:
        if view == "overview":
            return f"#/experiments/{experiment_id}"
        return f"#/experiments/{experiment_id}/{'traces' if view == 'traces' else 'runs'}"
    return ""


#: jupyter-server-proxy's JupyterLab command that opens a URL in a JupyterLab tab.
TAB_COMMAND = "server-proxy:open"
#: Its ``title`` must be a launcher entry's title (the tab's icon is looked up by it).
TAB_TITLE = "MLflow"


def lab_tab_link(url: str, text: str = "open in a JupyterLab tab") -> str:
    """A link that opens ``url`` in a JupyterLab tab, and is a plain link elsewhere.

    JupyterLab's command linker runs the command named in the attributes when the
    link is clicked in trusted output; where there is none (Notebook 7's notebook
    page, untrusted output, VS Code), the ``href`` opens a new browser tab instead.
    One tab per URL: clicking again shows the same tab.
    """
    args = json.dumps({"id": f"mlflow-magic:{url}", "title": TAB_TITLE, "url": url,
                       "newBrowserTab": False})
    return (f'<a href="{html.escape(url)}" target="_blank" rel="noopener" '
            f'data-commandlinker-command="{TAB_COMMAND}" '
            f'data-commandlinker-args="{html.escape(args)}">{html.escape(text)}</a>')


@dataclass(frozen=True, repr=False)
class UiView:
    """The UI inline: an iframe in notebooks, a link in terminals."""

    location: UiLocation
    route: str = ""
    height: int = DEFAULT_HEIGHT
    #: ``?mlflow_magic_login=<code>``: a one-time login for a private server's UI where the
    #: way to it adds no key (see :attr:`UiLocation.needs_login`); it expires in minutes
    login: str = ""

    @property
    def url(self) -> str:
        return self.link(self.route)

    def link(self, route: str = "") -> str:
        """The UI at ``route`` (a deep link), for the browser."""
        return self.location.url + self.login + route

    def __str__(self) -> str:
        note = (f" (a one-time link, valid for {LOGIN_TTL / 60:.0f} minutes)" if self.login
                else "")
        if self.location.needs_pass:  # good while this kernel runs: its pass is in the URL
            return f"MLflow UI: {self.location.url}{self.route}"
        return f"MLflow UI: {self.location.direct_url}{self.login}{self.route}{note}"

    def __repr__(self) -> str:
        return f"<UiView {self.url}>"

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        url = html.escape(self.url)
        links = [f'<a href="{url}" target="_blank" rel="noopener">open in a new browser tab</a>']
        frame = ""
        if self.location.inline:
            if not self.location.needs_pass:  # JupyterLab can open it in a tab of its own
                links.insert(0, lab_tab_link(self.url))
            frame = (f'<iframe class="mlflow-magic-ui" src="{url}" width="100%" '
                     f'height="{self.height}" style="border:1px solid #ddd" '
                     'title="MLflow UI"></iframe>')
        else:
            links.insert(0, "No Jupyter proxy found, so the UI is not embedded "
                            "(set MLFLOW_MAGIC_PROXY_URL if there is one).")
        return f'{frame}<div style="font-size:90%">{" &middot; ".join(links)}</div>'


def trace_renderer_base(location: UiLocation) -> str | None:
    """What MLflow's own inline trace display should use as its base URL."""
    return location.url if location.inline else None


def team_run_link(server_url: str, run_id: str) -> str | None:
    """Where the team server shows a run of this folder's server, once ``--sync-to`` has
    copied it there (None before, or for a server that does not sync). MLflow's UI opens
    ``#/runs/<id>`` in its experiment; the link carries no credentials."""
    from ..settings.masking import without_credentials
    from ..state import records, syncstate

    port = urlsplit(server_url).port
    folder = records.folder_last_on(port) if port is not None else None
    state = syncstate.load(folder) if folder is not None else None
    copy = state.runs.get(run_id) if state is not None else None
    if state is None or copy is None:
        return None
    return f"{without_credentials(state.target)}/#/runs/{copy}"
