"""The Jupyter route's relay: compression of the UI, kept per asset, through a real Jupyter."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import brotli
import own_loop
import requests
from conftest import fetch

from mlflow_magic.jupyter import compress, relay


def main_js(url: str) -> str:
    page = fetch(f"{url}/").decode()
    return re.search(r'src="([^"]+main\.[0-9a-f]+\.js)"', page).group(1)


def test_the_ui_is_compressed_once_kept_and_revalidated(jupyter, shared_server):
    route = f"{jupyter['url']}mlflow-magic/proxy/{shared_server.port}/"
    asset = main_js(shared_server.url)
    plain = fetch(f"{shared_server.url}/{asset}")
    sent = {**jupyter["auth"], "Accept-Encoding": "gzip, deflate"}
    first = requests.get(route + asset, headers=sent, stream=True, timeout=60)
    wire = first.raw.read()  # the bytes as they travelled
    assert first.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(wire) == plain
    assert len(wire) <= 0.40 * len(plain), (len(wire), len(plain))
    assert int(first.headers["Content-Length"]) == len(wire)
    assert first.headers["Cache-Control"] == "public, max-age=2419200"  # MLflow's own
    assert first.headers["ETag"].endswith('-gzip"') and "Accept-Encoding" in first.headers["Vary"]
    again = requests.get(route + asset, headers=sent, stream=True, timeout=60)
    assert again.raw.read() == wire  # from the cache: the same bytes
    revalidated = requests.get(route + asset, timeout=60,
                               headers={**sent, "If-None-Match": first.headers["ETag"]})
    assert revalidated.status_code == 304 and revalidated.headers["ETag"] == first.headers["ETag"]
    # A browser that asks for brotli gets it; one that asks for nothing, MLflow's bytes.
    br = requests.get(route + asset, stream=True, timeout=60,
                      headers={**jupyter["auth"], "Accept-Encoding": "br, gzip"})
    assert br.headers["Content-Encoding"] == "br"
    assert brotli.decompress(br.raw.read()) == plain
    identity = requests.get(route + asset, timeout=60,
                            headers={**jupyter["auth"], "Accept-Encoding": "identity"})
    assert "Content-Encoding" not in identity.headers and identity.content == plain


def test_artifacts_pass_as_they_are(jupyter, shared_server):
    stored = Path(shared_server.settings["artifacts_destination"]) / "zip" / "notes.json"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text('{"a": "' + "x" * 50_000 + '"}')
    got = requests.get(f"{jupyter['url']}mlflow-magic/proxy/{shared_server.port}/api/2.0/"
                       "mlflow-artifacts/artifacts/zip/notes.json", timeout=30,
                       headers={**jupyter["auth"], "Accept-Encoding": "gzip"})
    assert got.status_code == 200 and "Content-Encoding" not in got.headers
    assert len(got.content) > 50_000


def test_the_encoding_follows_the_browser():
    assert compress.choose("gzip, deflate, br, zstd") == "br"
    assert compress.choose("gzip, deflate") == "gzip"
    assert compress.choose("br;q=0, gzip;q=0.5") == "gzip"
    assert compress.choose("identity") is None and compress.choose(None) is None
    assert compress.tagged('"abc"', "gzip") == '"abc-gzip"'
    assert compress.tagged('W/"abc"', "br") == 'W/"abc-br"'
    assert compress.untagged('"abc-gzip", W/"def-br", "plain"') == '"abc", W/"def", "plain"'


def test_a_streamed_response_compresses_whole():
    data = b'{"runs": [' + b",".join(b'{"id": %d}' % i for i in range(20_000)) + b"]}"
    for encoding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        stream = compress.Stream(encoding)
        out = b"".join(stream.feed(data[i:i + 4096]) for i in range(0, len(data), 4096))
        assert decode(out + stream.end()) == data


def kept(data: bytes) -> compress.Kept:
    return compress.Kept((), ("If-None-Match", '"v1"'), data)


def test_the_asset_cache_is_bounded():
    cache = compress.Assets(limit=10)
    cache.put(("a",), kept(b"12345"))
    cache.put(("b",), kept(b"12345"))
    assert cache.get(("a",)).data == b"12345"  # now the most recently used
    cache.put(("c",), kept(b"12345"))
    assert cache.get(("b",)) is None and cache.get(("a",)) and cache.get(("c",))
    cache.put(("a",), kept(b"1"))  # a new version replaces the old one
    cache.put(("d",), kept(b"1234"))
    assert cache.get(("c",)) and cache.get(("a",)).data == b"1"
    cache.put(("huge",), kept(b"x" * 11))
    assert cache.get(("huge",)) is None


async def _relay_over_a_static_server(folder: Path, asked: list[dict]) -> list:
    """A tornado static-file server (ETags, 304s: as MLflow's static route answers) and
    the relay in front of it; the answers to the requests the test makes."""
    from tornado import httpclient, web
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    class Static(web.StaticFileHandler):
        def prepare(self):
            asked.append(dict(self.request.headers))

    @web.stream_request_body
    class Route(relay.Relay, web.RequestHandler):
        def compute_etag(self):
            return None

        async def prepare(self):
            await self.open_relay(upstream_port, self.request.path, None, True)

        async def get(self):
            await self.relay_response()

    upstream, upstream_port = bind_unused_port()
    front, front_port = bind_unused_port()
    up = HTTPServer(web.Application([(r"/(.*)", Static, {"path": str(folder)})],
                                    static_hash_cache=False))  # an ETag per content
    up.add_sockets([upstream])
    fr = HTTPServer(web.Application([(r"/.*", Route)]))
    fr.add_sockets([front])
    client = httpclient.AsyncHTTPClient()
    url = f"http://127.0.0.1:{front_port}/main.js"
    gzip_only = {"Accept-Encoding": "gzip"}
    answers = []
    try:
        for step in ("first", "again", "changed", "browser revalidates"):
            if step == "changed":
                (folder / "main.js").write_text("let changed = 1;\n" * 5000)
            headers = dict(gzip_only)
            if step == "browser revalidates":
                headers["If-None-Match"] = answers[-1].headers["ETag"]
            answers.append(await client.fetch(url, headers=headers, decompress_response=False,
                                              raise_error=False))
    finally:
        client.close()
        up.stop()
        fr.stop()
    return answers


def test_a_kept_asset_is_sent_once_mlflow_says_it_has_not_changed(tmp_path):
    (tmp_path / "main.js").write_text("let bundle = 1;\n" * 5000)
    asked: list[dict] = []
    first, again, changed, revalidated = own_loop.run(
        _relay_over_a_static_server(tmp_path, asked))
    assert first.code == again.code == changed.code == 200
    assert first.headers["Content-Encoding"] == again.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(first.body) == gzip.decompress(again.body) == (
        b"let bundle = 1;\n" * 5000)
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    # the second time the server was asked only whether it changed, and said no
    assert "If-None-Match" not in asked[0] and asked[1]["If-None-Match"] == (
        compress.untagged(first.headers["ETag"]))
    # a changed file: its new bytes, not the kept ones
    assert gzip.decompress(changed.body) == b"let changed = 1;\n" * 5000
    assert changed.headers["ETag"] != first.headers["ETag"]
    # a browser's own revalidation reaches the server as it was asked
    assert revalidated.code == 304 and asked[3]["If-None-Match"] == compress.untagged(
        changed.headers["ETag"])


def test_jupyters_credentials_never_go_on():
    from tornado.httputil import HTTPHeaders

    sent = relay.upstream_headers(HTTPHeaders({
        "Cookie": "_xsrf=1; username-127-0-0-1-8888=2; mlflow_user=admin; "
                  "mlflow-magic-5000=session; jupyterhub-session-id=3",
        "Authorization": "token jupyter-token", "Host": "hub.example.org",
        "Origin": "https://hub.example.org", "Connection": "keep-alive",
        "If-None-Match": '"abc-gzip"'}), 5000, "the-key", loopback_origin=True)
    assert sent["Cookie"] == "mlflow_user=admin" and "Authorization" not in sent
    assert sent["Host"] == "127.0.0.1:5000" and sent["Origin"] == "http://127.0.0.1:5000"
    assert sent["X-Mlflow-Magic-Key"] == "the-key" and "Connection" not in sent
    assert sent["If-None-Match"] == '"abc"'
    basic = relay.upstream_headers(HTTPHeaders({"Authorization": "Basic YTpi"}), 5000, None,
                                   loopback_origin=False)
    assert basic["Authorization"] == "Basic YTpi"  # MLflow's own login passes
    assert relay.upstream_query("token=abc&experiment_id=1") == "experiment_id=1"
