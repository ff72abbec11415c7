"""Values of a request's query string, without Sanic's cached copy.

``request.args`` parses the query once and keeps the result on the
request. For a WebSocket upgrade that request lives as long as the
connection, and the copy holds the token (``?token=``) a second time:
several hundred bytes per idle socket for nothing. These parse it the
same way (blank values dropped, invalid UTF-8 replaced) and keep nothing.

They parse it at a fraction of ``parse_qsl``'s cost, which is paid on
every connection: only a key or value that has a ``%`` or a ``+`` is
decoded (``tests/test_query.py`` holds them to ``parse_qs``).
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["query_value", "query_values"]


def query_values(query: str, name: str) -> list[str]:
    """The non-empty values of ``name`` in ``query``, in order.

    What ``request.args.getlist(name)`` gives for ``request.query_string``.
    """
    if not query:
        return []
    values = []
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        if equals and value and _decoded(key) == name:
            values.append(_decoded(value))
    return values


def _decoded(text: str) -> str:
    """``text`` as ``parse_qsl`` decodes it ('+' is a space)."""
    if "%" in text or "+" in text:
        return unquote(text.replace("+", " "), errors="replace")
    return text


def query_value(query: str, name: str) -> str | None:
    """The first non-empty value of ``name`` (see :func:`query_values`)."""
    if name not in query and "%" not in query:
        return None  # no key can decode to ``name``
    values = query_values(query, name)
    return values[0] if values else None
