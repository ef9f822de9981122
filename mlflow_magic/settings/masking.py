"""Secrets masked wherever a setting is shown: URIs, free text (log lines), command lines.

``ps`` shows every command line to every user of the machine, logs and records are
read by people: a password never appears in any of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import overload
from urllib.parse import urlsplit

#: Query parameters and flag names whose value is a secret.
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|signature|sig$|credential", re.I)
#: ``scheme://user:password@`` inside free text (log lines, error messages).
_TEXT_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^\s:/@]*):([^\s@/]+)@")
#: ``?password=...`` / ``&token=...`` inside free text.
_TEXT_QUERY_SECRET = re.compile(
    r"([?&][\w.-]*(?:pass|pwd|secret|token|key|signature|credential)[\w.-]*=)[^&\s'\"]+",
    re.I)
MASK = "***"


@overload
def mask_uri(uri: str) -> str: ...
@overload
def mask_uri(uri: None) -> None: ...
@overload
def mask_uri(uri: str | None) -> str | None: ...


def mask_uri(uri: str | None) -> str | None:
    """``uri`` with its password and secret query values replaced by ``***``.

    Covers ``user:password@`` in any scheme (databases, ``ftp://``, ``sftp://``,
    ``https://``) and query parameters such as ``?password=`` or ``&sig=``.
    """
    if not uri or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return mask_text(uri)
    masked = uri
    if password:
        netloc = f"{parts.username or ''}:{MASK}@{parts.netloc.rsplit('@', 1)[1]}"
        masked = masked.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if parts.query:
        query = "&".join(_mask_query_item(item) for item in parts.query.split("&"))
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return masked


def without_credentials(url: str) -> str:
    """``url`` with no ``user:password@`` and no query: the address to link to, or to know
    a server by whatever credentials its URL carries."""
    parts = urlsplit(url.rstrip("/"))
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{host}{parts.path}"


def _mask_query_item(item: str) -> str:
    name, sep, value = item.partition("=")
    return f"{name}={MASK}" if sep and value and _SECRET_NAME.search(name) else item


def mask_text(text: str) -> str:
    """Mask every password-bearing URI in free text (log lines, messages)."""
    return _TEXT_QUERY_SECRET.sub(rf"\1{MASK}", _TEXT_PASSWORD.sub(rf"\1:{MASK}@", text))


def mask_args(args: Sequence[str]) -> list[str]:
    """A command line safe to show: URIs masked, values of secret-named flags hidden."""
    shown: list[str] = []
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if arg.startswith("-") and eq:
            secret = _SECRET_NAME.search(flag) and not value.startswith("/")
            shown.append(f"{flag}={MASK}" if secret else f"{flag}={mask_uri(value)}")
        elif i and args[i - 1].startswith("--") and _SECRET_NAME.search(args[i - 1]) \
                and "://" not in arg:
            shown.append(MASK)
        else:
            shown.append(mask_uri(arg) or arg)
    return shown
