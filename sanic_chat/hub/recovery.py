"""Recovery: the events a client missed, for a join with ``since``.

:class:`~sanic_chat.hub.membership.Membership` holds the room's live
events back while these are read and replayed, so the client gets no gap
and no duplicate (see :mod:`sanic_chat.hub.room`).
"""

from __future__ import annotations

from ..backends.base import Broadcaster, Event
from ..revisions import fold

__all__ = ["missed"]


async def missed(
    broadcaster: Broadcaster, room: str, since: str | None, page_size: int
) -> tuple[bool | None, list[Event]]:
    """Read every stored event of ``room`` after ``since``.

    Args:
        broadcaster: Where history is.
        room: The room (or inbox).
        since: The last id the client has; None: nothing to replay.
        page_size: Events per history read (the history size).

    Returns:
        ``(found, events)``: ``found`` None without ``since``, False when
        ``since`` is no longer in history (then no events: the client
        re-syncs), else True and the events after it, oldest first.
        Messages edited or deleted later in the replay are as they are
        now (a deleted text is not sent); the edit and delete events stay,
        for messages the client had before ``since``.

    Raises:
        BroadcasterUnavailable: History could not be read.
    """
    found: bool | None = None
    events: list[Event] = []
    after = since
    while after is not None:
        # Page through the broadcaster's history, which may be longer
        # than one page: stopping early would leave a gap.
        page = await broadcaster.history(room, limit=page_size, after=after)
        if not page.found:
            return False, []
        found = True
        events += page.events
        after = page.events[-1].id if len(page.events) >= page_size else None
    return found, fold(events, keep_revisions=True)
