"""The client's public face: requests, answers and events.

:class:`ChatClient` turns calls into frames and waits for their answers;
its :class:`~sanic_chat.client.link.Link` owns the socket, reconnects
and renews the token. Requests wait in ``pending`` under a stable
``ref`` until answered, across reconnects (see ``link``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from ..backoff import Backoff
from .errors import ClientClosed, ConnectFailed, SendTimeout
from .events import Delivery, Event, Message
from .link import Link
from .sends import PendingSends
from .state import RoomLog
from .tokens import TokenGetter, TokenSource

__all__ = ["ChatClient"]


class ChatClient:
    """A chat connection that survives network failures.

    Use :func:`sanic_chat.client.connect`; the arguments are its. Every
    request but :meth:`typing` waits for the server's answer and raises
    the typed error of an ``error`` frame (``Refused`` and subclasses),
    :class:`SendTimeout`, ``Unauthorized`` or :class:`ClientClosed`.
    """

    def __init__(
        self,
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
    ) -> None:
        self.url = url
        self.send_timeout = send_timeout
        self.open_timeout = open_timeout
        self.log = RoomLog(list(rooms))
        self._events = Delivery(max_events, max_event_bytes)
        self._pending = PendingSends(max_pending, max_pending_bytes)
        self._link = Link(
            url, name, open_timeout, self.log, self._pending, self._events,
            backoff or Backoff(), TokenSource(token, get_token),
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Whether a socket is up, with every room joined, right now."""
        return self._link.up.is_set()

    @property
    def dropped(self) -> int:
        """Events dropped because the application did not read them."""
        return self._events.dropped

    @property
    def user(self) -> dict[str, str] | None:
        """Who the server says this client is (``{"id", "name"}``)."""
        return self.log.me

    async def __aenter__(self) -> ChatClient:
        self._task = asyncio.create_task(self._link.run(), name="chat-client")
        up = asyncio.ensure_future(self._link.up.wait())
        try:
            await asyncio.wait(
                (up, self._task),
                timeout=self.open_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            up.cancel()
        if not self.connected:
            failure = self._link.failure or ConnectFailed(
                f"could not connect to {self.url} in {self.open_timeout} s"
            )
            await self.close()
            raise failure
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> ChatClient:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.get()
        if event is None:
            if self._link.failure is not None:
                raise self._link.failure
            raise StopAsyncIteration
        return event

    async def send(
        self,
        room: str,
        text: str,
        *,
        meta: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline per send,
    ) -> str:
        """Publish ``text`` to ``room``; return the message's id.

        While disconnected, waits for the reconnect; a message whose ack
        was lost is sent again with the same ``ref``, never published
        twice (the server answers with the original id).

        Args:
            room: A room the client is in.
            text: The message.
            meta: Passed through to every member (a JSON object).
            timeout: Seconds before giving up (``send_timeout``).

        Raises:
            Refused: The server answered with an ``error`` frame (a
                subclass per code: ``Forbidden``, ``NotJoined``...).
            SendTimeout: No ack in time: the message may or may not
                have been published.
            Unauthorized: The credentials were refused meanwhile.
            ClientClosed: The client was closed first.
        """
        frame: dict[str, Any] = {"type": "message", "room": room,
                                 "text": text}  # fmt: skip
        if meta is not None:
            frame["meta"] = meta
        return str(await self._request(frame, timeout))

    async def send_to(
        self,
        user_id: str,
        text: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline per send
    ) -> str:
        """Send a direct message to ``user_id``; return its inbox id."""
        frame = {"type": "message", "to": user_id, "text": text}
        return str(await self._request(frame, timeout))

    async def edit(self, room: str, message_id: str, text: str) -> None:
        """Replace the text of message ``message_id`` of ``room``.

        Raises ``NotFound`` (no longer stored, or deleted) or
        ``Forbidden`` (someone else's) besides what :meth:`send` raises.
        """
        frame = {"type": "edit", "room": room, "id": message_id,
                 "text": text}  # fmt: skip
        await self._request(frame, None)

    async def delete(self, room: str, message_id: str) -> None:
        """Delete message ``message_id`` of ``room``; raises as edit."""
        frame = {"type": "delete", "room": room, "id": message_id}
        await self._request(frame, None)

    async def history(
        self, room: str, limit: int = 50, before: str | None = None
    ) -> list[Message]:
        """Return the newest ``limit`` stored messages of ``room``.

        Oldest first, as they are now (edits applied, deletions as
        ``deleted`` messages without text); with ``before`` (a message
        id), only older ones: pass the first id received to page back.
        """
        frame: dict[str, Any] = {"type": "history", "room": room,
                                 "limit": limit}  # fmt: skip
        if before is not None:
            frame["before"] = before
        messages: list[Message] = await self._request(frame, None)
        return messages

    def members(self, room: str) -> list[dict[str, str]]:
        """The users in ``room`` now (``{"id", "name"}``), kept live.

        A :class:`~sanic_chat.client.Presence` event follows each change.
        Empty until the room's first presence answer arrives.
        """
        return self._link.roster.members(room)

    async def receipts(self, room: str) -> dict[str, str]:
        """Return the last message read in ``room``, by user id."""
        marks: dict[str, str] = await self._request(
            {"type": "receipts", "room": room}, None
        )
        return marks

    async def mark_read(self, room: str, message_id: str) -> None:
        """Mark ``room`` read up to ``message_id`` (never backwards)."""
        await self._request(
            {"type": "read", "room": room, "id": message_id}, None
        )

    async def typing(
        self, room: str | None = None, *, to: str | None = None
    ) -> None:
        """Tell ``room`` (or user ``to``) you are typing; best-effort.

        Not resent after a reconnect, never answered: at most one every
        2 seconds goes out, see docs/protocol.md.
        """
        target = {"room": room} if to is None else {"to": to}
        await self._link.write({"type": "typing", **target})

    async def join(self, room: str) -> None:
        """Join ``room`` now and on every reconnect.

        The server answers with a :class:`~sanic_chat.client.Joined`.
        """
        await self._link.write(self.log.join_frame(room))

    async def leave(self, room: str) -> None:
        """Leave ``room``; it is no longer joined on reconnects."""
        self.log.forget(room)
        await self._link.write({"type": "leave", "room": room})

    async def close(self) -> None:
        """Close the socket and stop reconnecting.

        Pending sends fail with :class:`ClientClosed`.
        """
        self._link.closing.set()
        ws = self._link.ws
        if ws is not None:
            await ws.close()
        elif self._task is not None:
            self._task.cancel()  # connecting or in a backoff: no socket
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._link.finish(ClientClosed("the client was closed"), "closed")

    async def _request(
        self,
        frame: dict[str, Any],
        timeout: float | None,  # noqa: ASYNC109
    ) -> Any:
        if self._link.failure is not None:
            raise self._link.failure
        if self._link.closing.is_set():
            raise ClientClosed("the client is closed")
        future = self._pending.add(frame)
        # Registered and written without an await in between, as the
        # link resends: each pending request goes once on each socket.
        await self._link.write(frame)
        try:
            async with asyncio.timeout(timeout or self.send_timeout):
                return await future
        except TimeoutError:
            raise SendTimeout(
                f"no answer to {frame['type']} {frame['ref']} in time"
            ) from None
        finally:
            self._pending.remove(frame)
