"""Read receipts: the hub's side of ``read``, ``receipts`` and ``joined``.

The marks live in the broadcaster's optional
:class:`~sanic_chat.backends.base.Receipts` part, shared by every
worker; this unit asks it and builds the frames. A backend without the
part (one written for 0.1) still serves a chat: ``read`` and
``receipts`` are refused with ``bad_request`` and ``joined`` carries no
``last_read``/``unread``.
"""

from __future__ import annotations

import json
import logging

from .. import protocol
from ..backends.base import Broadcaster, Receipts, receipts_of
from ..config import ChatConfig
from ..errors import BroadcasterUnavailable, ProtocolError
from ..revisions import is_revision

__all__ = ["ReadMarks"]

logger = logging.getLogger(__name__)


class ReadMarks:
    """Users' read marks in rooms, through the broadcaster.

    Args:
        broadcaster: The chat's backend.
        config: History size (the most unread counted), presence limit.
    """

    __slots__ = ("_broadcaster", "_config", "_part")

    def __init__(self, broadcaster: Broadcaster, config: ChatConfig) -> None:
        self._broadcaster = broadcaster
        self._config = config
        self._part = receipts_of(broadcaster)

    async def state(
        self, user_id: str, room: str
    ) -> tuple[str | None, int | None]:
        """``(last_read, unread)`` for a ``joined`` reply; best-effort.

        ``unread`` None (no such fields) when the backend keeps no marks
        or cannot answer now: a join does not fail for its counter.
        """
        if self._part is None:
            return None, None
        try:
            state = await self._part.read_state(
                room, user_id, limit=self._config.history_size
            )
        except BroadcasterUnavailable as exc:
            logger.debug("read state of %s not read: %s", room, exc)
            return None, None
        unread = state.unread
        if unread:
            # The backend counts stored events; edits and deletes are
            # stored events too, and a deleted message is not unread.
            try:
                counted = await self._messages_after(room, state.last_read)
                unread = unread if counted is None else counted
            except BroadcasterUnavailable as exc:
                logger.debug("unread of %s not counted: %s", room, exc)
        return state.last_read, unread

    async def _messages_after(
        self, room: str, last_read: str | None
    ) -> int | None:
        """Messages stored after ``last_read``, not counting deleted ones.

        None when ``last_read`` has left the history meanwhile.
        """
        page = await self._broadcaster.history(
            room, limit=self._config.history_size, after=last_read
        )
        if not page.found:
            return None
        deleted: set[object] = set()
        messages: list[str | None] = []
        for event in page.events:
            if event.payload.startswith(protocol.DELETED_PREFIX):
                deleted.add(json.loads(event.payload).get("id"))
            elif not is_revision(event):
                messages.append(event.id)
        return sum(1 for message in messages if message not in deleted)

    async def mark(
        self, user_id: str, room: str, message_id: str
    ) -> bool | None:
        """Move ``user_id``'s mark in ``room``; see ``Receipts.mark_read``.

        Raises:
            ProtocolError: ``bad_request`` when the backend keeps none.
            BroadcasterUnavailable: The backend cannot be reached.
        """
        return await self._require().mark_read(room, user_id, message_id)

    async def frame(self, room: str, asker: str) -> str:
        """Encode the ``receipts`` reply: the marks of the room's members.

        Members are the users present in the room (on every worker, up
        to ``presence_list_limit``); for an inbox, its owner ``asker``.

        Raises:
            ProtocolError: ``bad_request`` when the backend keeps none.
            BroadcasterUnavailable: The backend cannot be reached.
        """
        part = self._require()
        if protocol.is_inbox(room):
            members = [asker]
        else:
            info = await self._broadcaster.presence(
                room, limit=self._config.presence_list_limit
            )
            members = [user["id"] for user in info.users]
        return protocol.receipts(room, await part.receipts(room, members))

    def _require(self) -> Receipts:
        if self._part is None:
            raise ProtocolError(
                "bad_request", "this chat's backend keeps no read receipts"
            )
        return self._part
