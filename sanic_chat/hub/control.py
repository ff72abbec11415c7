"""Notices between the workers of one chat: disconnect a user everywhere.

Every worker subscribes to one channel of the broadcaster,
:data:`CONTROL_CHANNEL`, which is not a valid room name, so no client can
join or publish to it. A disconnect asked of any worker closes the user's
connections on that worker at once and, through the channel, on every
other one.
"""

from __future__ import annotations

import asyncio
import json
import logging

from ..backends.base import Broadcaster, Gap
from ..backoff import Backoff
from ..errors import BroadcasterUnavailable
from ..protocol import encode
from .registry import Registry

__all__ = ["CONTROL_CHANNEL", "ControlChannel"]

logger = logging.getLogger(__name__)

# Carries notices between workers (disconnect a user). Not a valid room
# name, so no client can join or publish to it.
CONTROL_CHANNEL = "#sanic-chat-control"


class ControlChannel:
    """Sends and follows the workers' control notices.

    Args:
        broadcaster: Carries the notices between workers.
        registry: The connections that notices act on.
    """

    __slots__ = ("_broadcaster", "_registry", "_task")

    def __init__(self, broadcaster: Broadcaster, registry: Registry) -> None:
        self._broadcaster = broadcaster
        self._registry = registry
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Follow the channel until :meth:`stop` (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._follow(), name="sanic-chat control"
            )

    def stop(self) -> asyncio.Task[None] | None:
        """Stop following; return the cancelled task, to be awaited."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def disconnect_user(self, user_id: str, reason: str) -> int:
        """Close ``user_id``'s connections here and tell other workers.

        Returns:
            How many connections were closed on this worker.
        """
        closed = self._registry.close_user(user_id, reason)
        await self._broadcaster.publish(
            CONTROL_CHANNEL,
            encode({"op": "disconnect", "user": user_id, "reason": reason}),
            store=False,
        )
        return closed

    def handle(self, payload: str) -> None:
        """Act on one notice, as published by :meth:`disconnect_user`."""
        notice = json.loads(payload)
        if notice.get("op") == "disconnect":
            self._registry.close_user(
                str(notice["user"]), str(notice["reason"])
            )

    async def _follow(self) -> None:
        """Act on notices (published by any worker) until cancelled."""
        backoff = Backoff()
        while True:
            try:
                async with self._broadcaster.subscribe(
                    CONTROL_CHANNEL
                ) as events:
                    backoff.reset()
                    async for item in events:
                        if not isinstance(item, Gap):
                            self.handle(item.payload)
                raise BroadcasterUnavailable("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not backoff.failing:
                    logger.warning(
                        "control channel failed (%s); retrying", exc
                    )
                await backoff.pause()
