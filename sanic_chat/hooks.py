"""The app's hooks: who may do what, and what a message may say.

The callables an app gives :func:`~sanic_chat.create_blueprint`
(``can_join``, ``can_publish``, ``can_moderate``, ``can_message``,
``before_publish``), sync or async, and the one place that asks them:
:class:`Hooks`, held by the chat as ``chat.hooks``. The endpoint asks it
for a socket's requests, :class:`~sanic_chat.Chat` and the HTTP API for
theirs, so a hook answers the same way on every path.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .identity import User
from .protocol import check_text

__all__ = ["BeforePublish", "Hooks", "MessageCheck", "RoomCheck"]

RoomCheck = Callable[[User, str], "bool | Awaitable[bool]"]
"""``(user, room) -> bool``, sync or async: may this user do it here?"""

MessageCheck = Callable[[User, str], "bool | Awaitable[bool]"]
"""``(sender, recipient_id) -> bool``, sync or async: may they DM them?"""

BeforePublish = Callable[
    [User, str, str, "dict[str, Any] | None"],
    "str | Awaitable[str | None] | None",
]
"""``(user, room, text, meta) -> text | None``, sync or async.

Runs before a message, a direct message or an edit is stored: return
the text to publish (possibly changed), ``None`` to publish it
unchanged, or raise :class:`~sanic_chat.errors.Forbidden` with a reason
to refuse it.
"""


class Hooks:
    """The app's permission and moderation hooks, and how they are asked.

    Every hook is optional. Without ``can_join``, ``can_publish`` or
    ``can_message`` everyone may; without ``can_moderate`` nobody may
    change someone else's message; without ``before_publish`` every
    message is stored as sent.

    Args:
        max_text_length: The longest text ``before_publish`` may return.
        can_join: May a user join (or connect into) a room?
        can_publish: May a user post a message to a room?
        can_message: May a user send a direct message (or ``typing``)
            to another user (block lists)?
        can_moderate: May a user edit and delete others' messages in a
            room?
        before_publish: Checks or changes every message, direct message
            and edit before it is stored (:data:`BeforePublish`).
    """

    __slots__ = (
        "_before_publish",
        "_can_join",
        "_can_message",
        "_can_moderate",
        "_can_publish",
        "_max_text_length",
    )

    def __init__(
        self,
        max_text_length: int,
        *,
        can_join: RoomCheck | None = None,
        can_publish: RoomCheck | None = None,
        can_message: MessageCheck | None = None,
        can_moderate: RoomCheck | None = None,
        before_publish: BeforePublish | None = None,
    ) -> None:
        self._max_text_length = max_text_length
        self._can_join = can_join
        self._can_publish = can_publish
        self._can_message = can_message
        self._can_moderate = can_moderate
        self._before_publish = before_publish

    @property
    def joins_unchecked(self) -> bool:
        """Whether every join is allowed (no ``can_join`` hook to ask)."""
        return self._can_join is None

    async def may_join(self, user: User, room: str) -> bool:
        """Ask the ``can_join`` hook (everyone may when there is none)."""
        return await _ask(self._can_join, user, room)

    async def may_publish(self, user: User, room: str) -> bool:
        """Ask the ``can_publish`` hook (everyone may when there is none)."""
        return await _ask(self._can_publish, user, room)

    async def may_message(self, sender: User, recipient_id: str) -> bool:
        """Ask the ``can_message`` hook (everyone may when there is none)."""
        return await _ask(self._can_message, sender, recipient_id)

    async def may_moderate(self, user: User, room: str) -> bool:
        """Ask the ``can_moderate`` hook (nobody may when there is none)."""
        if self._can_moderate is None:
            return False
        return await _ask(self._can_moderate, user, room)

    @property
    def moderates(self) -> bool:
        """Whether the app has a ``before_publish`` hook."""
        return self._before_publish is not None

    async def moderate(
        self,
        user: User,
        room: str,
        text: str,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Run ``before_publish``: return the text to store.

        Every path that stores a message, a direct message or an edit
        calls it (sockets, :meth:`Chat.publish <sanic_chat.Chat.publish>`,
        :meth:`Chat.send_to_user <sanic_chat.Chat.send_to_user>`,
        :meth:`Chat.edit <sanic_chat.Chat.edit>`, the HTTP API): call it
        too from your own. ``room`` is the room (for a direct message:
        the recipient's inbox).

        Raises:
            Forbidden: The hook refused the message; its text is the
                reason.
            ProtocolError: The text the hook returned is not a valid
                message (empty, too long: ``bad_request``, ``too_large``).
            TypeError: The hook returned neither a string nor ``None``.
        """
        hook = self._before_publish
        if hook is None:
            return text
        answer = hook(user, room, text, meta)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer is None:
            return text
        if not isinstance(answer, str):
            raise TypeError(
                "before_publish must return a str or None, not "
                f"{type(answer).__name__}"
            )
        return check_text(answer, self._max_text_length)


async def _ask(check: RoomCheck | None, user: User, target: str) -> bool:
    if check is None:
        return True
    answer = check(user, target)
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)
