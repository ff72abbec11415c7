"""Storing messages, edits and deletes; reading history with them folded.

A message is published into its room's stream once, encoded once (see
:func:`sanic_chat.protocol.message_payload`). An edit or delete is
published the same way, as an ``edited`` or ``deleted`` event naming its
target (:mod:`sanic_chat.revisions`), so that every worker delivers it
in order and recovery replays it. History is read whole (the room's
``history_size`` events) and folded, so that a page lists each message
with its current text whatever page its edits are on.

Every event stored here is also handed to the ``on_message`` hook's
queue (:mod:`sanic_chat.archive`) when the app has one: on this worker
only, after the publish, without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .. import protocol, revisions
from ..archive import Archive, MessageEvent
from ..backends.base import Broadcaster, Event, HistoryPage
from ..config import ChatConfig
from ..errors import BroadcasterUnavailable
from ..identity import User
from ..metrics import Metrics
from ..protocol import message_payload, now_ms

__all__ = ["Messages"]


class Messages:
    """The messages of the rooms: publish, edit, delete, read.

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

    async def stored(self, room: str) -> list[Event]:
        """Every stored message of ``room``, oldest first, folded."""
        page = await self._broadcaster.history(
            room, limit=self._config.history_size
        )
        return revisions.fold(page.events, keep_revisions=False)

    async def message(
        self, room: str, message_id: str
    ) -> dict[str, Any] | None:
        """The stored message ``message_id`` of ``room``, decoded.

        With its current text; None when it is not there, or deleted.
        """
        return revisions.find(await self.stored(room), message_id)

    async def page(
        self,
        room: str,
        limit: int,
        *,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """A page of ``room``'s folded history.

        See :func:`sanic_chat.revisions.page`.
        """
        return revisions.page(
            await self.stored(room), limit, before=before, after=after
        )
