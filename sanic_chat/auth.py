"""Pre-upgrade checks: who is connecting and to which rooms.

This runs as blueprint request middleware, before Sanic performs the
WebSocket handshake, so a refused client gets a plain HTTP answer with a
JSON body (400 or 401) and never a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from sanic import HTTPResponse, Request
from sanic.response import json

from .chat import Chat
from .protocol import MAX_ID_LENGTH, valid_room


@dataclass(frozen=True, slots=True)
class RoomRequest:
    """A room to join at connect, from ``?room=NAME`` or ``NAME@SINCE``."""

    room: str
    since: str | None = None


def refuse(status: int, code: str, message: str) -> HTTPResponse:
    """Build the JSON error answer of a refused upgrade."""
    return json({"error": {"code": code, "message": message}}, status=status)


async def check_upgrade(chat: Chat, request: Request) -> HTTPResponse | None:
    """Identify the client and validate its rooms, or refuse the upgrade.

    On success, ``request.ctx.chat_user`` is the :class:`User` and
    ``request.ctx.chat_rooms`` the list of :class:`RoomRequest`.
    """
    rooms: list[RoomRequest] = []
    seen: set[str] = set()
    for value in request.args.getlist("room", []):
        name, sep, since = value.partition("@")
        if not valid_room(name) or (
            sep and not 0 < len(since) <= MAX_ID_LENGTH
        ):
            return refuse(
                400,
                "bad_request",
                "room must match ^[A-Za-z0-9_.:-]{1,64}$, optionally "
                "followed by @ and a message id",
            )
        if name not in seen:
            seen.add(name)
            rooms.append(RoomRequest(name, since if sep else None))
    if len(rooms) > chat.config.max_rooms_per_connection:
        return refuse(
            400,
            "too_many_rooms",
            "a connection may be in at most "
            f"{chat.config.max_rooms_per_connection} rooms",
        )
    try:
        user = await chat.authenticator(request)
    except ValueError as exc:
        return refuse(400, "bad_request", str(exc))
    if user is None:
        return refuse(401, "unauthorized", "authentication required")
    request.ctx.chat_user = user
    request.ctx.chat_rooms = rooms or [RoomRequest(chat.config.default_room)]
    return None
