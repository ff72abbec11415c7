"""The Python client of sanic-chat: reconnects, recovers, never sends twice.

::

    async with sanic_chat.client.connect(
        "ws://127.0.0.1:8000/ws", token=token, rooms=["lobby"]
    ) as chat:
        message_id = await chat.send("lobby", "hello")
        async for event in chat:
            if isinstance(event, sanic_chat.client.Message):
                print(event.user["name"], event.text)

The client reconnects with jittered exponential backoff after any
failure but a refusal of its credentials (HTTP 401 at connect, or a
close with 1008; with ``get_token``, only a second one in a row),
re-joins each room with ``since`` set to the last
message id it saw there, and delivers every message once, in the
room's order. See ``docs/clients.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .connection import ChatClient
from .errors import (
    BadRequest,
    ChatClientError,
    ClientClosed,
    ConnectFailed,
    Forbidden,
    NotFound,
    NotJoined,
    RateLimited,
    Refused,
    SendTimeout,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from .events import (
    Deleted,
    Edited,
    Error,
    Event,
    Joined,
    Lagged,
    Left,
    Message,
    Presence,
    Resync,
    StateChange,
    Typing,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..backoff import Backoff
    from .tokens import TokenGetter

__all__ = [
    "BadRequest",
    "ChatClient",
    "ChatClientError",
    "ClientClosed",
    "ConnectFailed",
    "Deleted",
    "Edited",
    "Error",
    "Event",
    "Forbidden",
    "Joined",
    "Lagged",
    "Left",
    "Message",
    "NotFound",
    "NotJoined",
    "Presence",
    "RateLimited",
    "Refused",
    "Resync",
    "SendTimeout",
    "StateChange",
    "TooLarge",
    "Typing",
    "Unauthorized",
    "Unavailable",
    "connect",
]


def connect(
    url: str,
    *,
    token: str | None = None,
    get_token: TokenGetter | None = None,
    rooms: Sequence[str] = (),
    name: str | None = None,
    send_timeout: float = 10.0,
    open_timeout: float = 10.0,
    max_events: int = 10_000,
    max_event_bytes: int = 16 << 20,
    max_pending: int = 1_000,
    max_pending_bytes: int = 1 << 20,
    backoff: Backoff | None = None,
) -> ChatClient:
    """Return a client; ``async with`` it to connect.

    Entering the block waits until every room is joined (the server's
    ``welcome`` and one ``joined`` per room), so that every message
    published after it is delivered; leaving it closes the socket and
    stops reconnecting.

    Args:
        url: The chat endpoint, ``ws://host:port/ws`` (``wss://`` for
            TLS).
        token: Sent as the ``bearer.<token>`` subprotocol, never in the
            URL.
        get_token: Called (sync or async) for a fresh token before
            every connect, shortly before the token (a JWT) expires, to
            renew it with a ``refresh`` frame, and once after the
            server refused the credentials, before giving up.
        rooms: Rooms to join (the server's default room when empty).
        name: Display name, for a guest.
        send_timeout: Seconds :meth:`ChatClient.send` waits for its ack,
            reconnects included.
        open_timeout: Seconds to connect (the first time: then
            :class:`ConnectFailed`) and for each handshake.
        max_events: Events kept for the application to read; when it
            reads slower than they come, the oldest are dropped and
            counted in :attr:`ChatClient.dropped`.
        max_event_bytes: The same bound on their frames' bytes (as
            JSON), 16 MiB.
        max_pending: Sends waiting for their ack at once; more raise
            :class:`SendTimeout`.
        max_pending_bytes: Their bytes (as JSON) at once, 1 MiB; a
            send past it raises :class:`SendTimeout` at once.
        backoff: The delays between reconnects (``Backoff()``: 0.1 s
            doubling to 5 s, jittered).

    Raises:
        Unauthorized: On entering: the server refused the token (401).
        ConnectFailed: On entering: not joined within ``open_timeout``.
    """
    return ChatClient(
        url,
        token=token,
        get_token=get_token,
        rooms=rooms,
        name=name,
        send_timeout=send_timeout,
        open_timeout=open_timeout,
        max_events=max_events,
        max_event_bytes=max_event_bytes,
        max_pending=max_pending,
        max_pending_bytes=max_pending_bytes,
        backoff=backoff,
    )
