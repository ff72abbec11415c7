"""Storing messages, edits, deletes and DMs; reading history folded.

A message is published into its room's stream once, encoded once (see
:func:`sanic_chat.protocol.message_payload`). An edit or delete is
published the same way, as an ``edited`` or ``deleted`` event naming its
target (:mod:`sanic_chat.revisions`), so that every worker delivers it
in order and recovery replays it. History is read whole (the room's
``history_size`` events) and folded, so that a page lists each message
with its current text whatever page its edits are on.

A direct message is the same publish into two inboxes, the
recipient's and the sender's (:meth:`Messages.send_direct`); ``typing``
and ``read`` notices are publishes that are not stored
(:meth:`Messages.signal`).

Every room event stored here is also handed to the ``on_message``
hook's queue (:mod:`sanic_chat.archive`) when the app has one: on this
worker only, after the publish, without waiting. Direct messages are
not (a :class:`~sanic_chat.MessageEvent` has no recipient field yet).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import protocol, revisions
from ..archive import Archive, MessageEvent
from ..backends.base import Broadcaster, Event, HistoryPage
from ..config import ChatConfig
from ..connection import Connection
from ..errors import BroadcasterUnavailable, ProtocolError
from ..identity import User
from ..metrics import Metrics
from ..protocol import (
    direct_payload,
    fit,
    inbox_name,
    message_payload,
    now_ms,
)
from .room import event_text

__all__ = ["Messages"]

Charge = Callable[[int], None]
"""Told how much stored history a request made the server read."""


class Messages:
    """The messages of the rooms and inboxes: publish, edit, delete, read.

    Args:
        broadcaster: Stores and carries the events.
        config: ``history_size``.
        metrics: Publish counts and latency.
    """

    __slots__ = ("_broadcaster", "_config", "_metrics", "archive")

    def __init__(
        self, broadcaster: Broadcaster, config: ChatConfig, metrics: Metrics
    ) -> None:
        self._broadcaster = broadcaster
        self._config = config
        self._metrics = metrics
        self.archive: Archive | None = None
        """The ``on_message`` hook's queue, when the app has the hook."""

    async def publish(
        self,
        room: str,
        user: User,
        text: str,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Publish a chat message; return its id.

        Raises:
            BroadcasterUnavailable: The message could not be published.
        """
        ts = now_ms()
        public = user.public()
        message_id = await self._store(
            room, message_payload(room, public, text, ts, meta)
        )
        self._metrics.messages_received += 1
        archive = self.archive
        if archive is not None:
            archive.record(
                MessageEvent(
                    "message", room, message_id, public, ts, text, meta,
                    message_id,
                )
            )  # fmt: skip
        return message_id

    async def edit(
        self, room: str, message_id: str, user: User, text: str
    ) -> int:
        """Store and send ``edited`` for ``message_id``; return its time.

        The caller checked that the message exists and who may edit it.
        """
        ts = now_ms()
        public = user.public()
        payload = protocol.edited(room, message_id, text, public, ts)
        event_id = await self._store(room, payload)
        if self.archive is not None:
            self.archive.record(
                MessageEvent(
                    "edited", room, message_id, public, ts, text, None,
                    event_id,
                )
            )  # fmt: skip
        return ts

    async def delete(self, room: str, message_id: str, user: User) -> None:
        """Store and send ``deleted`` for ``message_id``.

        The caller checked that the message exists and who may delete it.
        """
        ts = now_ms()
        public = user.public()
        payload = protocol.deleted(room, message_id, public, ts)
        event_id = await self._store(room, payload)
        if self.archive is not None:
            self.archive.record(
                MessageEvent(
                    "deleted", room, message_id, public, ts, None, None,
                    event_id,
                )
            )  # fmt: skip

    async def _store(self, room: str, payload: str) -> str:
        started = time.perf_counter()
        event = await self._broadcaster.publish(room, payload)
        self._metrics.observe_publish(time.perf_counter() - started)
        if event.id is None:
            raise BroadcasterUnavailable("broadcaster stored no id")
        return event.id

    async def stored(
        self, room: str, charge: Charge | None = None
    ) -> list[Event]:
        """Every stored message of ``room``, oldest first, folded.

        The whole history is read whatever the caller needs from it (one
        message, a page, an id that is not there): ``charge``, when
        given, is told the bytes read (as held in memory), so that the
        client who asked pays for them (a cheap request must not buy a
        costly read).
        """
        page = await self._broadcaster.history(
            room, limit=self._config.history_size
        )
        if charge is not None:
            charge(sum(sys.getsizeof(event.payload) for event in page.events))
        return revisions.fold(page.events, keep_revisions=False)

    async def message(
        self, room: str, message_id: str, charge: Charge | None = None
    ) -> dict[str, Any] | None:
        """The stored message ``message_id`` of ``room``, decoded.

        With its current text; None when it is not there, or deleted.
        ``charge`` as for :meth:`stored`.
        """
        return revisions.find(await self.stored(room, charge), message_id)

    async def page(
        self,
        room: str,
        limit: int,
        *,
        before: str | None = None,
        after: str | None = None,
        charge: Charge | None = None,
    ) -> HistoryPage:
        """A page of ``room``'s folded history.

        See :func:`sanic_chat.revisions.page`; ``charge`` as for
        :meth:`stored`.
        """
        return revisions.page(
            await self.stored(room, charge), limit, before=before, after=after
        )

    async def history_frame(
        self,
        room: str,
        limit: int | None,
        *,
        before: str | None = None,
        max_bytes: int | None = None,
        charge: Charge | None = None,
    ) -> str:
        """Encode the ``history`` reply for ``room``, oldest first.

        Args:
            room: The room.
            limit: Most messages (at most ``history_size``).
            before: Only messages older than this id (paging backwards).
            max_bytes: Most bytes of messages in the reply: the oldest
                ones that do not fit are left out and the frame says
                ``"truncated":true`` (ask again with ``before``).
            charge: Told the bytes read and not sent back (the reply
                is charged as a reply), as for :meth:`stored`.

        Raises:
            ProtocolError: ``not_found`` when ``before`` is not an id in
                the room's history (any more).
        """
        size = self._config.history_size
        read: list[int] = []
        page = await self.page(
            room, min(limit or size, size), before=before, charge=read.append
        )
        if not page.found:
            if charge is not None:
                charge(sum(read))
            raise ProtocolError("not_found", "message id not in history")
        texts, truncated = fit(page.events, event_text, max_bytes)
        frame = protocol.history(room, texts, truncated)
        if charge is not None:
            charge(max(0, sum(read) - len(frame)))
        return frame

    async def send_direct(
        self,
        sender: User,
        to: str,
        text: str,
        meta: Mapping[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Store a DM in the inboxes of ``to`` and ``sender``; deliver it.

        One stored publish per inbox (one when the sender writes to
        themselves), at once; every connection of both users gets its
        inbox's copy, on every worker, and each copy is in that inbox's
        history for recovery.

        Returns:
            The ids of the recipient's copy and of the sender's (the
            same when they are one user).

        Raises:
            BroadcasterUnavailable: A copy could not be published (the
                other may have been).
        """
        ts, public = now_ms(), sender.public()
        inboxes = {inbox_name(sender.id), inbox_name(to)}
        copies = [
            (inbox, direct_payload(inbox, to, public, text, ts, meta))
            for inbox in sorted(inboxes, key=lambda i: i != inbox_name(to))
        ]
        started = time.perf_counter()
        events = await asyncio.gather(
            *(self._broadcaster.publish(i, p) for i, p in copies)
        )
        self._metrics.observe_publish(time.perf_counter() - started)
        self._metrics.messages_received += 1
        first, last = events[0].id, events[-1].id
        if first is None or last is None:
            raise BroadcasterUnavailable("broadcaster stored no id")
        archive = self.archive
        if archive is not None:
            for (inbox, _), event in zip(copies, events, strict=True):
                archive.record(
                    MessageEvent(
                        "message", inbox, event.id or "", public, ts, text,
                        meta, event.id or "", to,
                    )
                )  # fmt: skip
        return first, last

    async def signal(self, conn: Connection, room: str, frame: str) -> None:
        """Publish an ephemeral ``frame`` to ``room``'s other connections.

        Not stored; best-effort, as presence notices: the members get it
        when they can take it, the sending connection never.
        """
        await self._broadcaster.publish(
            room, frame, store=False, origin=conn.key
        )
