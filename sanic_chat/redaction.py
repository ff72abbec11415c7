"""Tokens out of Sanic's log lines: a :class:`logging.Filter`.

Clients may send their token as a ``token`` query parameter (browsers
cannot set headers on a WebSocket), and Sanic logs request URLs (as does
uvicorn, when it serves the app: every WebSocket upgrade): the
access log (every request, and the WebSocket ``OPEN``/``CLOSE`` lines),
the error log (``Exception occurred while handling uri: ...``) and its
root logger (a request stopped by a lost connection). Those lines are
written by Sanic, some before any route or validation runs, so the only
place that sees them all is the logging system itself.

:func:`install` adds one :class:`TokenRedactingFilter` to each of
:data:`LOGGERS`, once per process, when a chat blueprint is registered.
It is the only change sanic-chat makes to the host's logging. The filter
rewrites the record before any handler sees it: ``token=...`` becomes
``token=REDACTED`` in the message (formatted with its arguments), in
string ``extra`` fields (Sanic's access log puts the URL in
``record.request``) and in a logged traceback.

Limits: a filter on a logger sees only the records logged on that very
logger, not those of its children or of other libraries; the match is
on query syntax (``?`` or ``&``, a key that percent-decodes to
``token``, ``=``), so a token printed any other way is not recognized.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

# Sanic's loggers that print request URLs (see sanic/logging/loggers.py),
# and uvicorn's, which log every WebSocket upgrade with its query string
# when the app is served by it (docs/deployment.md, "ASGI servers").
LOGGERS = (
    "sanic.access",
    "sanic.error",
    "sanic.root",
    "uvicorn.access",
    "uvicorn.error",
)
REDACTED = "REDACTED"

# A query parameter: after "?" or "&", up to the next "&", blank, quote
# or fragment (a URL inside a log message ends at one of those).
_PARAM = re.compile(r"(?<=[?&])([^=&\s'\"#]*)=[^&\s'\"#]*")
_FORMATTER = logging.Formatter()


def redact(text: str) -> str:
    """Return ``text`` with the value of every ``token`` parameter hidden.

    Keys are percent-decoded first, as the query parser does, so that
    ``%74oken=...`` (which authenticates as well) is caught too.
    """
    if "=" not in text or ("token" not in text and "%" not in text):
        return text
    return _PARAM.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    key = match.group(1)
    if key == "token" or ("%" in key and unquote_plus(key) == "token"):
        return f"{key}={REDACTED}"
    return match.group(0)


class TokenRedactingFilter(logging.Filter):
    """Rewrite ``token=...`` query values in a log record; never drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken call: logging reports it on emit
            message = None
        if message is not None:
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
        for key, value in list(vars(record).items()):
            if key != "msg" and isinstance(value, str):
                clean = redact(value)
                if clean != value:
                    setattr(record, key, clean)
        if record.exc_info and record.exc_text is None:
            trace = _FORMATTER.formatException(record.exc_info)
            clean = redact(trace)
            if clean != trace:
                # Formatters use exc_text as is once it is set.
                record.exc_text = clean
        return True


def install() -> None:
    """Add the filter to each of :data:`LOGGERS`, unless already there."""
    for name in LOGGERS:
        target = logging.getLogger(name)
        if not any(
            isinstance(f, TokenRedactingFilter) for f in target.filters
        ):
            target.addFilter(TokenRedactingFilter())
