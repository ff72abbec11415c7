"""What server code writes into rooms and inboxes, checked as a client's.

:meth:`Chat.publish <sanic_chat.Chat.publish>`, :meth:`~sanic_chat.Chat.edit`,
:meth:`~sanic_chat.Chat.delete` and :meth:`~sanic_chat.Chat.send_to_user`
(and through them the HTTP API) go the way a socket's request goes: the
same validation (:mod:`sanic_chat.protocol`), the ``before_publish``
hook, then the hub. A refusal is a ``ValueError`` (invalid), a
``LookupError`` (no such message) or :class:`~sanic_chat.Forbidden`
(the hook), rather than an ``error`` frame.
"""

from __future__ import annotations

from typing import Any

from .config import ChatConfig
from .errors import ProtocolError
from .hooks import Hooks
from .hub import Hub
from .identity import User
from .protocol import (
    check_meta,
    check_room,
    check_text,
    check_user_id,
    inbox_name,
)

__all__ = ["Posting"]


class Posting:
    """Server code's messages, edits, deletes and direct messages.

    Args:
        config: ``max_text_length``.
        hooks: The app's hooks (``before_publish``).
        hub: Where the checked writes go.
    """

    __slots__ = ("_config", "_hooks", "_hub")

    def __init__(self, config: ChatConfig, hooks: Hooks, hub: Hub) -> None:
        self._config = config
        self._hooks = hooks
        self._hub = hub

    async def publish(
        self, room: str, text: str, user: User, meta: dict[str, Any] | None
    ) -> str:
        """See :meth:`Chat.publish <sanic_chat.Chat.publish>`."""
        try:
            check_room(room)
            check_text(text, self._config.max_text_length)
            check_meta(meta)
            text = await self._hooks.moderate(user, room, text, meta)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        return await self._hub.messages.publish(room, user, text, meta)

    async def edit(
        self, room: str, message_id: str, text: str, user: User
    ) -> None:
        """See :meth:`Chat.edit <sanic_chat.Chat.edit>`."""
        try:
            check_room(room)
            check_text(text, self._config.max_text_length)
            message = await self._stored(room, message_id)
            text = await self._hooks.moderate(
                user, room, text, message.get("meta")
            )
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        await self._hub.messages.edit(room, message_id, user, text)

    async def delete(self, room: str, message_id: str, user: User) -> None:
        """See :meth:`Chat.delete <sanic_chat.Chat.delete>`."""
        try:
            check_room(room)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        await self._stored(room, message_id)
        await self._hub.messages.delete(room, message_id, user)

    async def send_to_user(
        self,
        user_id: str,
        text: str,
        user: User,
        meta: dict[str, Any] | None,
    ) -> str:
        """See :meth:`Chat.send_to_user <sanic_chat.Chat.send_to_user>`."""
        try:
            check_user_id(user_id, "user_id")
            check_text(text, self._config.max_text_length)
            check_meta(meta)
            inbox = inbox_name(user_id)
            text = await self._hooks.moderate(user, inbox, text, meta)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        delivered, _ = await self._hub.messages.send_direct(
            user, user_id, text, meta
        )
        return delivered

    async def _stored(self, room: str, message_id: str) -> dict[str, Any]:
        message = await self._hub.messages.message(room, message_id)
        if message is None:
            raise LookupError(
                f"message {message_id!r} is not in the history of {room!r}"
            )
        return message
