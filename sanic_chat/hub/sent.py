"""Messages sent once: a resend with a ``ref`` already accepted is answered.

A client that lost the ``ack`` of a ``message`` (its connection dropped)
cannot tell whether the message was published; it resends it with the
same ``ref``. :meth:`SentRefs.once` publishes only when no message of
that user with that ``ref`` was accepted within ``idempotency_window``,
and otherwise returns the first one's id, so the client gets the same
``ack`` and nobody sees the message twice.

The refs live in the backend's :class:`~sanic_chat.backends.base.
Idempotency` part: on Redis shared by every worker (a resend may reach
another worker after a reconnect). A backend without the part gets one
in each worker's memory: resends that reach the same worker are safe,
resends that reach another one are published again (logged once at
startup, when the window is on).

Of two concurrent sends with one ref, the claim lets one publish; the
other waits for its id (polling the part, at most :data:`WAIT` seconds,
then ``unavailable``: the client retries later). A publish that fails
releases its claim, so a resend may retry; a worker that dies between
its claim and its publish blocks the ref for :data:`LEASE` seconds at
most. If storing the id fails after the publish, a later resend would
publish again: that is logged.

With ``wait_replicas``, a publish the replicas did not confirm
(:class:`~sanic_chat.errors.NotReplicated`) was still published: its id
is stored, not released, so a resend never publishes it twice; the
part answers that resend only once replicas hold the message. The id's
own write must reach the replicas too before the ack (or the sender is
told ``unavailable`` and resends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..backends.base import PENDING, Broadcaster, Idempotency, idempotency_of
from ..backends.memory_idempotency import MemoryIdempotency
from ..config import ChatConfig
from ..errors import BroadcasterUnavailable, NotReplicated

__all__ = ["LEASE", "WAIT", "SentRefs"]

logger = logging.getLogger(__name__)

LEASE = 30.0
"""Seconds a claim holds without being settled (a publish under way)."""
WAIT = 10.0
"""Seconds a concurrent resend waits for the first send's id."""


class SentRefs:
    """The refs of the messages users sent, for idempotent publishing.

    Args:
        broadcaster: Its :class:`~sanic_chat.backends.base.Idempotency`
            part keeps the refs; without one, this worker's memory does.
        config: ``idempotency_window`` (seconds; 0: off).
    """

    __slots__ = ("_part", "lease", "wait", "window")

    def __init__(self, broadcaster: Broadcaster, config: ChatConfig) -> None:
        self.window = config.idempotency_window
        self.lease = min(self.window, LEASE)
        self.wait = WAIT
        part = idempotency_of(broadcaster)
        if part is None and self.window > 0:
            logger.info(
                "%r keeps no refs of sent messages: resends are "
                "recognised on the worker that published them only",
                broadcaster,
            )
            part = MemoryIdempotency()
        self._part: Idempotency | None = part

    async def once(
        self,
        user_id: str,
        ref: str | None,
        publish: Callable[[], Awaitable[str]],
    ) -> str:
        """Run ``publish`` unless ``ref`` was already sent; return the id.

        Args:
            user_id: The sender; refs of other users never match.
            ref: The client's ref; None: always publish.
            publish: Publishes the message and returns its id.

        Raises:
            BroadcasterUnavailable: The refs or the publish are
                unreachable, or a concurrent send with ``ref`` did not
                finish within :attr:`wait` seconds.
        """
        part = self._part
        if ref is None or part is None or self.window <= 0:
            return await publish()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        delay = 0.005
        while (
            known := await part.claim(user_id, ref, self.lease)
        ) is not None:
            if known != PENDING:
                return known
            if loop.time() >= deadline:
                raise BroadcasterUnavailable(
                    "a send with this ref is still under way"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            message_id = await publish()
        except NotReplicated as exc:
            # Published: keep its id, so a resend is not published again.
            if exc.message_id is not None:
                with contextlib.suppress(BroadcasterUnavailable):
                    await self._settle(part, user_id, ref, exc.message_id)
            raise
        except BaseException:
            # Unreachable: the lease frees it.
            with contextlib.suppress(BroadcasterUnavailable):
                await part.release(user_id, ref)
            raise
        await self._settle(part, user_id, ref, message_id)
        return message_id

    async def _settle(
        self, part: Idempotency, user_id: str, ref: str, message_id: str
    ) -> None:
        """Store the id of ``ref``; raise only :class:`NotReplicated`."""
        try:
            await part.settle(user_id, ref, message_id, self.window)
        except NotReplicated:
            raise
        except BroadcasterUnavailable as exc:
            logger.warning(
                "message %s published but its ref not stored (%s): a "
                "resend of it would be published again",
                message_id,
                exc,
            )
