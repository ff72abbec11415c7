"""The WebSocket under a chat connection: one small interface, two kinds.

:class:`~sanic_chat.connection.Connection` and :mod:`sanic_chat.endpoint`
use nothing but :class:`Socket`. Behind it:

* **fast** (:class:`~sanic_chat.transport.fast.FastSocket`): on Sanic's
  own server, frames are parsed by the sans-I/O
  :mod:`~sanic_chat.transport.rfc6455` (websockets' rules) and
  prebuilt frames written straight to the TCP transport; no task per
  socket. It relies on Sanic internals, so it is used only when the
  startup check of :mod:`sanic_chat._sanic` finds them all.
* **portable** (:class:`~sanic_chat.transport.portable.PortableSocket`):
  on a public WebSocket API, Sanic's own websocket object or an ASGI
  server's ``websocket.*`` messages. Two small tasks per connection (a
  reader and a writer) and a send queue bounded in bytes and frames keep
  the same synchronous :meth:`Socket.write` contract.

Both derive from :class:`~sanic_chat.transport.base.SocketBase`, which
holds what does not depend on the I/O underneath: the reader's inbox and
its water marks, the close timer, ``on_lost`` and the keepalive decision
(:class:`~sanic_chat.transport.base.Keepalive`, settings stored once).
Both take the same prebuilt frames (:mod:`sanic_chat.wire`) and report
back pressure the same way: :attr:`Socket.can_write` is set while a write
goes out at once, cleared while the socket is backed up, which is when
the connection's own bounded queues take over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import EllipsisType
from typing import Literal, Protocol

from ..limits import TokenBucket
from .base import LostListener
from .flag import Flag

Kind = Literal["fast", "portable"]
"""Which transport serves a chat's sockets."""


class Socket(Protocol):
    """What a chat connection needs from its WebSocket.

    Attributes:
        can_write: Set while :meth:`write` goes out at once (not into a
            buffer above its high-water mark).
        write_direct: The cheapest way to write a frame while the socket
            is open and ``can_write`` is set (the fan-out hot path).
        on_lost: Told once (its ``socket_lost()``), as soon as the socket
            is no longer open (a close started by either side, or the
            connection lost).
        limiter: The connection's rate limit, charged for control frames
            and fragments where the transport sees them.
        max_strikes: ``rate_limited`` strikes before a 1008 close.
    """

    can_write: Flag | asyncio.Event
    write_direct: Callable[[bytes], object]
    on_lost: LostListener | None
    limiter: TokenBucket | None
    max_strikes: int

    @property
    def open(self) -> bool:
        """Whether data frames may still be sent."""
        ...

    @property
    def reading_paused(self) -> bool:
        """Whether reading is paused because unread messages piled up."""
        ...

    @property
    def close_received(self) -> int | None:
        """The close code the client sent, if it sent one."""
        ...

    def buffered(self) -> int:
        """Bytes written and not yet taken by the client (or its server)."""
        ...

    def writable(self) -> bool:
        """Whether the socket is open and a write goes out at once."""
        ...

    async def wait_writable(self) -> None:
        """Wait until the socket drains below its low-water mark."""
        ...

    def write(self, data: bytes) -> None:
        """Write prebuilt frames; dropped once the socket is closing."""
        ...

    def keepalive(self, now: float) -> str | None:
        """Ping the client when due (``now`` is ``time.monotonic()``).

        Returns:
            The reason to close with 1011 when the last ping went
            unanswered for too long, else None. Transports whose server
            does keepalive itself never ping and return None.
        """
        ...

    def start_closing(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame after what is written; stop reading."""
        ...

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake."""
        ...

    async def recv(self) -> str | bytes | None:
        """The next message; None once reading is over."""
        ...

    def uncork(self) -> None:
        """Write what was held back during set-up, if anything was."""
        ...

    def take(self) -> str | bytes | EllipsisType | None:
        """:meth:`recv` without waiting: ``...`` while no message waits."""
        ...

    def arrival(self) -> asyncio.Future[None]:
        """A future done when :meth:`take` may have something new."""
        ...

    async def wait_closed(self) -> None:
        """Wait until the close frame is out (or given up on)."""
        ...
