"""Keep link tokens and query values out of every log line.

A personal form link (``/f/<token>``) and an unsubscribe link (``/u/<token>``) are credentials,
and query strings carry search terms (``/transcripts/search?q=<a name>``). Access logs (uvicorn),
error logs and any other record that quotes a request path would otherwise carry them; the record
factory installed here rewrites tokens to ``<redacted>`` and query values to ``…`` in the message
and its arguments when the record is made, so no handler or formatter ever sees them. Query
names stay, so a log still says which filters a request used.

Examples
--------
>>> redact("GET /f/abcDEF123_-xyz?x=1 HTTP/1.1")
'GET /f/<redacted>?x=… HTTP/1.1'
>>> redact("POST /u/Mzc.abc-def HTTP/1.1")
'POST /u/<redacted> HTTP/1.1'
>>> redact("GET /studies/1/transcripts/search?q=Quernmouth&limit=5 HTTP/1.1")
'GET /studies/1/transcripts/search?q=…&limit=… HTTP/1.1'
"""

from __future__ import annotations

import logging
import re
from typing import Any

_LINK = re.compile(r"/([fu])/[^/?#\s\"']+")
# "?name=value&name2=value2" inside a request line or URL: keep the names, drop the values.
_QUERY = re.compile(r"(?<=[?&])([^=&#\s\"']*)=[^&#\s\"']*")
_installed = False


def redact(text: str) -> str:
    text = _LINK.sub(r"/\1/<redacted>", text)
    return _QUERY.sub(r"\1=…", text) if "?" in text else text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple):
        return tuple(_clean(v) for v in value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    # URL objects (httpx, starlette) and other values formatted with %s
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a value that cannot be printed cannot leak either
        return value
    return redact(text) if ("/f/" in text or "/u/" in text or "?" in text) else value


def install_log_redaction() -> None:
    """Wrap the logging record factory once per process."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.args:
            record.args = _clean(record.args)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
