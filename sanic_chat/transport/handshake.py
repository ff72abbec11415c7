"""The opening handshake's checks (RFC 6455, section 4.2), server side.

Pure functions of the request's headers: they decide whether an upgrade
request is valid before either transport answers it, so that the fast
and the portable path on Sanic's own server refuse the same requests
with the same answers (400, or 426 for another WebSocket version). Under
an ASGI server the server itself checks the handshake before the app
sees the request.
"""

from __future__ import annotations

import base64
import hashlib

from sanic import HTTPResponse, Request

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def check(request: Request) -> HTTPResponse | str:
    """Return the ``Sec-WebSocket-Accept`` value, or the refusal to send."""
    headers = request.headers
    keys = headers.getall("sec-websocket-key", [])
    key = keys[0] if len(keys) == 1 else ""
    if request.version == "1.0" or "host" not in headers:
        return refusal(400, "an upgrade needs HTTP/1.1 and a Host header")
    if "content-length" in headers or "transfer-encoding" in headers:
        return refusal(400, "an upgrade request has no body")
    if not _has_token(headers.getall("upgrade", []), "websocket"):
        return refusal(400, "missing Upgrade: websocket")
    if not _has_token(headers.getall("connection", []), "upgrade"):
        return refusal(400, "missing Connection: Upgrade")
    versions = headers.getall("sec-websocket-version", [])
    if len(versions) > 1:
        return refusal(400, "repeated Sec-WebSocket-Version")
    if versions != ["13"]:
        refused = refusal(426, "unsupported WebSocket version; use 13")
        refused.headers["Sec-WebSocket-Version"] = "13"
        return refused
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        return refusal(400, "invalid Sec-WebSocket-Key")
    # SHA-1 is what RFC 6455 prescribes here; it proves nothing secret.
    digest = hashlib.sha1(
        (key + _GUID).encode(), usedforsecurity=False
    ).digest()
    return base64.b64encode(digest).decode()


def response_head(accept: str, subprotocol: str | None) -> bytes:
    """The ``101 Switching Protocols`` answer, headers and blank line."""
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n"
    )
    if subprotocol is not None:
        head += f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
    return (head + "\r\n").encode()


def refusal(status: int, reason: str) -> HTTPResponse:
    """A plain-text refusal of an invalid handshake."""
    return HTTPResponse(
        f"Failed to open a WebSocket connection: {reason}.\n",
        status=status,
        content_type="text/plain",
    )


def _has_token(values: list[str], token: str) -> bool:
    """Whether comma-separated header ``values`` contain ``token``.

    A loop, not a generator: it runs twice per upgrade, and a value that
    is the token alone (the usual) is found without splitting it.
    """
    for value in values:
        if value.strip().lower() == token:
            return True
        for part in value.split(","):
            if part.strip().lower() == token:
                return True
    return False
