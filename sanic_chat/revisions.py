"""Edits and deletes, folded onto the messages they change.

An edit or a delete is stored in the room's stream like a message: an
``edited`` or ``deleted`` payload (:func:`sanic_chat.protocol.edited`,
:func:`~sanic_chat.protocol.deleted`) that names its target's id. So a
backend stores it without knowing what it is (no new storage in the
backend interface), every worker delivers it in the room's order, and a
client that recovers with ``since`` gets it replayed.

Readers of history fold them (:func:`fold`): a ``history`` reply lists
each message once, with its current text and ``edited_ts`` when it was
edited, or as a tombstone (``"deleted": true``, no text, no meta) when
it was deleted, and does not list the edit and delete events
themselves. A recovery replay folds the messages it contains and keeps
the events, whose targets the client may have from before.

Pure functions on :class:`~sanic_chat.backends.base.Event` lists: no I/O.
Only payloads that begin with an ``edited`` or ``deleted`` prefix are
decoded, and only the messages they change are encoded again; every
other stored message is passed on as the same string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import protocol
from .backends.base import Event, HistoryPage

__all__ = ["find", "fold", "is_revision", "page"]


def is_revision(event: Event) -> bool:
    """Whether ``event`` is a stored edit or delete, not a message."""
    return event.payload.startswith(protocol.REVISION_PREFIXES)


def fold(events: Sequence[Event], *, keep_revisions: bool) -> list[Event]:
    """Apply the edits and deletes among ``events`` to their targets.

    The last edit of a message wins; a delete is final (a later edit of
    a deleted message changes nothing).

    Args:
        events: Stored events of one room, oldest first.
        keep_revisions: Keep the edit and delete events in the result
            (a replay: the client may hold their targets from before);
            otherwise only messages are returned (history).

    Returns:
        The events in the same order, messages with their payload
        changed where an edit or delete among ``events`` targets them.
    """
    changes: dict[str, dict[str, Any]] = {}
    for event in events:
        if not is_revision(event):
            continue
        change = _decoded(event.payload)
        if change is None or not isinstance(change.get("id"), str):
            continue
        previous = changes.get(change["id"])
        if previous is None or previous["type"] != "deleted":
            changes[change["id"]] = change
    folded: list[Event] = []
    for event in events:
        if is_revision(event):
            if keep_revisions:
                folded.append(event)
            continue
        change = changes.get(event.id) if event.id is not None else None
        if change is not None:
            event = replace(event, payload=_apply(event.payload, change))
        folded.append(event)
    return folded


def _apply(payload: str, change: dict[str, Any]) -> str:
    message = _decoded(payload)
    if message is None:
        return payload
    if change["type"] == "deleted":
        return protocol.tombstone(message)
    message["text"] = change.get("text", message.get("text"))
    message["edited_ts"] = change.get("edited_ts")
    return protocol.encode(message)


def _decoded(payload: str) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def find(messages: Sequence[Event], message_id: str) -> dict[str, Any] | None:
    """The message ``message_id`` of folded ``messages``, decoded.

    ``None`` when it is not there, or was deleted.
    """
    for event in messages:
        if event.id == message_id:
            message = _decoded(event.payload)
            if message is None or message.get("deleted"):
                return None
            return message
    return None


def page(
    messages: Sequence[Event],
    limit: int,
    *,
    before: str | None = None,
    after: str | None = None,
) -> HistoryPage:
    """Select a page of folded ``messages``, as :meth:`Broker.history`.

    Without ``before``/``after`` the newest ``limit``; with ``after`` the
    oldest ``limit`` after it; with ``before`` the newest ``limit``
    before it (with both: the oldest between them). ``found`` is false
    when a given id is not among ``messages``.
    """
    ids = [event.id for event in messages]
    start, end = 0, len(messages)
    if after is not None:
        if after not in ids:
            return HistoryPage([], found=False)
        start = ids.index(after) + 1
    if before is not None:
        if before not in ids:
            return HistoryPage([], found=False)
        end = ids.index(before)
    window = list(messages[start:end]) if start < end else []
    if after is not None:
        return HistoryPage(window[:limit])
    return HistoryPage(window[-limit:])
