"""The UI behind a public host name (JupyterHub) with no flags, through a real Jupyter.

Requests carry the public ``Host`` and ``Origin`` a browser sends behind a hub at
``hub.example.test``. jupyter-server-proxy's generic route forwards them, and
MLflow refuses them; mlflow_magic's route presents a loopback Host to MLflow
after Jupyter's login, while MLflow's own port keeps refusing foreign hosts.
"""

from __future__ import annotations

import requests
from conftest import as_host, free_port, owner

from mlflow_magic.contract import GATE_HEADER
from mlflow_magic.security import ports

HUB = "hub.example.test"


def through(jupyter, route: str, port: int, path: str, method: str = "GET",
            token: bool = True, **headers: str) -> requests.Response:
    """A request to ``<jupyter>/<route><port>/<path>`` as a browser behind the hub sends it."""
    sent = {"Host": HUB, **headers}
    if token:
        sent.update(jupyter["auth"])
    body = {"name": f"exp-{free_port()}"} if method == "POST" else None
    return requests.request(method, f"{jupyter['url']}{route}{port}/{path}", json=body,
                            headers=sent, timeout=30, allow_redirects=False)


SEARCH = "api/2.0/mlflow/experiments/search?max_results=1"
CREATE = "ajax-api/2.0/mlflow/experiments/create"


def test_the_generic_proxy_route_is_refused_by_mlflow(jupyter, shared_server):
    """What users saw behind a hub: "Invalid Host header" (once past the server's gate,
    which wants the folder's key or a login; the generic route adds neither)."""
    refused = through(jupyter, "proxy/", shared_server.port, SEARCH)
    assert refused.status_code == 401 and refused.headers.get(GATE_HEADER)
    login = ports.login_query(shared_server.url)
    session = requests.Session()
    entered = session.get(f"{jupyter['url']}proxy/{shared_server.port}/{login}",
                          headers={**jupyter["auth"], "Host": HUB}, timeout=30)
    assert entered.status_code == 403 and "Invalid Host header" in entered.text


def test_our_route_serves_the_ui_and_its_writes_behind_a_public_host(jupyter, shared_server):
    route, port = "mlflow-magic/proxy/", shared_server.port
    page = through(jupyter, route, port, "")
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    assert through(jupyter, route, port, SEARCH).status_code == 200
    created = through(jupyter, route, port, CREATE, "POST", Origin=f"https://{HUB}",
                      **{"Sec-Fetch-Site": "same-origin"})
    assert created.status_code == 200, created.text
    assert requests.get(f"{jupyter['url']}mlflow-magic/api/info", headers=jupyter["auth"],
                        timeout=10).json()["route"] == "mlflow-magic/proxy/{port}/"


def test_our_route_keeps_every_protection(jupyter, shared_server):
    route, port = "mlflow-magic/proxy/", shared_server.port
    anonymous = through(jupyter, route, port, SEARCH, token=False)
    assert anonymous.status_code in (302, 403)  # Jupyter's login first
    cross = through(jupyter, route, port, CREATE, "POST", Origin="https://evil.example",
                    **{"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    not_mlflow = through(jupyter, route, free_port(), SEARCH)
    assert not_mlflow.status_code == 404
    # MLflow's own port still refuses the public name and cross-origin writes, also to a
    # client with the folder's key.
    assert as_host(shared_server.url, HUB)[0] == 403
    direct = requests.post(f"{shared_server.url}/{CREATE}", json={"name": "evil"},
                           headers=owner(shared_server.url, Origin="https://evil.example"),
                           timeout=10)
    assert direct.status_code == 403


def test_the_launcher_tile_reads_behind_a_public_host(jupyter):
    answer = requests.get(f"{jupyter['url']}mlflow/{SEARCH}", timeout=150,
                          headers={"Host": HUB, **jupyter["auth"]})
    assert answer.status_code == 200, answer.text
