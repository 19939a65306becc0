"""Keep form-link tokens out of every log line.

A personal link is a credential. Access logs (uvicorn), error logs and any other record that
quotes a request path would otherwise carry it; the record factory installed here rewrites
``/f/<token>`` to ``/f/<redacted>`` in the message and its arguments when the record is made, so
no handler or formatter ever sees the token.

Examples
--------
>>> redact("GET /f/abcDEF123_-xyz?x=1 HTTP/1.1")
'GET /f/<redacted>?x=1 HTTP/1.1'
"""

from __future__ import annotations

import logging
import re
from typing import Any

_LINK = re.compile(r"/f/[^/?#\s\"']+")
_installed = False


def redact(text: str) -> str:
    return _LINK.sub("/f/<redacted>", text)


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
    return redact(text) if "/f/" in text else value


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
