"""The ASGI WebSocket messages the portable transport speaks.

Under an ASGI server (``uvicorn server:app``) the connection is the
server's: the app receives ``websocket.connect``, ``websocket.receive``
and ``websocket.disconnect`` and sends ``websocket.accept``,
``websocket.send`` and ``websocket.close`` (the ASGI WebSocket spec).
:class:`AsgiChannel` is that, as a
:class:`~sanic_chat.transport.portable.Channel`.

A refusal before the upgrade (401, 403, 429, ...) is an HTTP answer
only where the server offers the ``websocket.http.response`` extension
(uvicorn does, for every WebSocket implementation it has); elsewhere it
is a ``websocket.close`` before the accept, with code 1008 and the
error code as its reason, which servers turn into an HTTP 403. An
``http.response.*`` message is never sent on a WebSocket scope.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sanic import HTTPResponse

from ..errors import CloseCode

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HTTP_RESPONSE = "websocket.http.response"


class AsgiChannel:
    """An accepted ASGI WebSocket, as the portable transport uses it.

    Args:
        receive: The ASGI ``receive`` callable of the connection.
        send: The ASGI ``send`` callable of the connection.
    """

    __slots__ = ("_receive", "_send", "close_received")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.close_received: int | None = None

    async def send(self, text: str) -> None:
        """Send one text message."""
        await self._send({"type": "websocket.send", "text": text})

    async def receive(self) -> str | bytes | None:
        """The next message, or None after ``websocket.disconnect``."""
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    return str(text)
                return bytes(message.get("bytes") or b"")
            if kind == "websocket.disconnect":
                self.close_received = int(message.get("code", 1005))
                return None

    async def close(self, code: int, reason: str) -> None:
        """Send ``websocket.close`` (the server does the handshake)."""
        await self._send(
            {"type": "websocket.close", "code": code, "reason": reason}
        )

    def abort(self) -> None:
        """ASGI has no way to drop a connection: the server's timeouts do."""


async def accept(
    receive: Receive, send: Send, subprotocol: str | None
) -> AsgiChannel | None:
    """Wait for ``websocket.connect``, then accept; None: the client left."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            break
        if message["type"] == "websocket.disconnect":
            return None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    return AsgiChannel(receive, send)


async def refuse(scope: Message, send: Send, response: HTTPResponse) -> None:
    """Send ``response`` as the answer to a WebSocket scope's handshake.

    As an HTTP response where the server supports the
    ``websocket.http.response`` extension, else as a close with 1008
    (policy violation) whose reason is the refusal's error code.
    """
    if HTTP_RESPONSE in (scope.get("extensions") or {}):
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
            if name.lower() not in ("content-type", "content-length")
        ]
        body = bytes(response.body or b"")
        if response.content_type:
            headers.append(
                (b"content-type", response.content_type.encode("latin-1"))
            )
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status,
                "headers": headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send(
        {
            "type": "websocket.close",
            "code": int(CloseCode.POLICY_VIOLATION),
            "reason": error_code(response),
        }
    )


def error_code(response: HTTPResponse) -> str:
    """The ``error.code`` of a JSON refusal, else its HTTP status."""
    try:
        code = json.loads(response.body or b"")["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return str(response.status)
    return str(code)[:120]
