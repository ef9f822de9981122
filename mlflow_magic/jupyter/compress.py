"""Compression on the Jupyter route: MLflow's UI is 16 MB of uncompressed HTML, JS and CSS.

Neither Jupyter Server nor MLflow compresses, which over a remote hub's link is most
of the time to a first page. So the route encodes what compresses well (HTML, JS,
CSS, JSON, SVG) when the browser accepts it: brotli where it asks for it and the
``brotli`` package is installed, else gzip.

- **Assets** (a response with a validator: an ETag or Last-Modified) are compressed
  once and kept, with their headers and validator, in a bounded cache. A later
  request for the same file asks MLflow only whether it changed (``If-None-Match``):
  on its 304 the kept bytes go out, so MLflow does not send the 4.4 MB bundle again
  (~0.3 s here) for the 1 MB that leaves. MLflow's cache headers stay; its ETag gets
  the encoding added (``"abc-gzip"``: two encodings are two representations), and is
  taken off again in the browser's ``If-None-Match``, so MLflow answers 304 itself.
- **Other responses** (the REST API's JSON) are compressed as they stream.
- Artifacts, ranges, HEAD and responses already encoded pass as they are.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections import OrderedDict
from dataclasses import dataclass

try:  # optional: `pip install brotli` (or brotlicffi)
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import brotlicffi as brotli
    except ImportError:
        brotli = None

#: Types worth compressing (by the start of their Content-Type).
COMPRESSIBLE = ("text/html", "text/css", "text/javascript", "application/javascript",
                "application/json", "image/svg+xml", "text/plain", "application/manifest+json")
#: Paths whose bodies are users' files: passed as they are, never buffered.
ARTIFACT_PATHS = re.compile(r"/(get-artifact|mlflow-artifacts/|model-versions/get-artifact)")
#: The largest asset compressed whole and kept; larger ones are compressed as they stream.
MAX_ASSET = 16 * 2**20
#: What the kept assets may weigh, compressed, before the oldest go.
CACHE_BYTES = 64 * 2**20
GZIP_LEVEL = 6
BROTLI_QUALITY = 5
MIN_SIZE = 1024
_SUFFIX = re.compile(r'-(gzip|br)(?=")')


def choose(accept_encoding: str | None) -> str | None:
    """The encoding to answer with: ``br``, ``gzip`` or None (as the browser asked)."""
    accepted = {}
    for part in (accept_encoding or "").lower().split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if name:
            accepted[name] = q
    if brotli is not None and accepted.get("br", 0) > 0:
        return "br"
    if accepted.get("gzip", 0) > 0:
        return "gzip"
    return None


def compressible_type(headers) -> bool:
    return (headers.get("Content-Type") or "").lower().startswith(COMPRESSIBLE)


def worth_it(method: str, path: str, status: int, headers) -> bool:
    """Whether a response should be compressed on its way to the browser."""
    if method == "HEAD" or status != 200 or ARTIFACT_PATHS.search(path):
        return False
    if headers.get("Content-Encoding") or headers.get("Content-Range"):
        return False
    if not compressible_type(headers):
        return False
    size = headers.get("Content-Length")
    return size is None or int(size) >= MIN_SIZE


def tagged(etag: str, encoding: str) -> str:
    """The ETag of the encoded representation: ``"abc"`` -> ``"abc-gzip"``."""
    return etag[:-1] + f'-{encoding}"' if etag.endswith('"') else etag


def untagged(header: str) -> str:
    """``If-None-Match`` as MLflow knows its ETags (the encodings taken off)."""
    return _SUFFIX.sub("", header)


def compress(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        return brotli.compress(data, quality=BROTLI_QUALITY)
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


class Stream:
    """Compress a response as it streams, chunk by chunk."""

    def __init__(self, encoding: str) -> None:
        if encoding == "br":
            self._brotli = brotli.Compressor(quality=BROTLI_QUALITY)
        else:
            self._brotli = None
            self._zlib = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip header

    def feed(self, chunk: bytes) -> bytes:
        if self._brotli is not None:
            return self._brotli.process(chunk)
        return self._zlib.compress(chunk)

    def end(self) -> bytes:
        if self._brotli is not None:
            return self._brotli.finish()
        return self._zlib.flush()


@dataclass(frozen=True)
class Kept:
    """One compressed asset as the browser got it: the headers sent (the ETag tagged with
    the encoding), MLflow's validator to ask again with, and the bytes."""

    headers: tuple[tuple[str, str], ...]
    condition: tuple[str, str]  # ("If-None-Match", etag) or ("If-Modified-Since", date)
    data: bytes


def condition(headers) -> tuple[str, str] | None:
    """How to ask MLflow whether a response it sent has changed since: its validator."""
    if headers.get("ETag"):
        return "If-None-Match", headers["ETag"]
    if headers.get("Last-Modified"):
        return "If-Modified-Since", headers["Last-Modified"]
    return None


class Assets:
    """Compressed assets by (port, URI, encoding), least recently used out first."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self._kept: OrderedDict[tuple, Kept] = OrderedDict()
        self._size = 0
        #: how many times an asset was compressed (once each, while it stays kept)
        self.compressions = 0

    def get(self, key: tuple) -> Kept | None:
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
        return found

    def put(self, key: tuple, kept: Kept) -> None:
        """Keep ``kept`` (in place of an older version of the same asset)."""
        self.drop(key)
        if len(kept.data) > self.limit:
            return
        self._kept[key] = kept
        self._size += len(kept.data)
        while self._size > self.limit:
            _, dropped = self._kept.popitem(last=False)
            self._size -= len(dropped.data)

    def drop(self, key: tuple) -> None:
        old = self._kept.pop(key, None)
        if old is not None:
            self._size -= len(old.data)


#: One cache per process (the Jupyter server, or the forwarder).
ASSETS = Assets()
