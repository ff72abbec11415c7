"""The shapes of protocol v1's frames, as typed data: one source.

Each frame is a ``TypedDict``. :mod:`sanic_chat.protocol` builds every
server frame as one (so ``mypy --strict`` checks each builder against
its shape) and checks client frames against the limits defined here;
:mod:`sanic_chat.asyncapi` turns the same classes into the AsyncAPI
document's JSON Schemas and the TypeScript declarations. A field's
constraints ride along in ``Annotated[..., Wire(...)]``, which costs
nothing at run time.

Field order is the order on the wire; ``NotRequired`` fields are
present only when the docstring of the builder says so.
"""

# No ``from __future__ import annotations``: TypedDict reads NotRequired
# from evaluated annotations, and asyncapi.py reads them at run time.

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from .config import ROOM_NAME_RE

MAX_REF_LENGTH = 128
MAX_ID_LENGTH = 128
MAX_TOKEN_LENGTH = 8192
MAX_META_BYTES = 2048
"""Most bytes of a message's ``meta``, encoded as the server sends it."""

INBOX_RE = re.compile(r"@(?:[A-Za-z0-9_.:-]{1,63}|~[0-9a-f]{32})")
"""Inbox names: never a valid room name (rooms cannot contain ``@``)."""

ERROR_CODES = (
    "bad_request",
    "too_large",
    "not_joined",
    "too_many_rooms",
    "forbidden",
    "not_found",
    "rate_limited",
    "unavailable",
    "internal_error",
)
"""Every ``code`` an ``error`` frame carries (docs/protocol.md)."""


@dataclass(frozen=True, slots=True)
class Wire:
    """JSON Schema constraints of one field, for the AsyncAPI document.

    ``setting`` names a :class:`~sanic_chat.config.ChatConfig` field
    whose value is the ``maxLength`` (the server's own limit), ``ref`` a
    component schema the field is, ``enum`` the values a ``str`` takes.
    """

    description: str = ""
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | None = None
    setting: str | None = None
    ref: str | None = None
    enum: tuple[str, ...] = ()


def _whole(*patterns: str) -> str:
    return "^(?:" + "|".join(patterns) + ")$"


class User(TypedDict):
    """A user's public part, as frames carry it."""

    id: Annotated[str, Wire("Stable user id; guests' start with guest-")]
    name: Annotated[str, Wire("Display name")]


PublicUser = Annotated[Mapping[str, str], Wire(ref="User")]
"""A user's public part (``{"id", "name"}``), as builders take it."""

Ref = Annotated[
    str,
    Wire(
        "Chosen by the client; echoed in the ack and in the error of this "
        "request",
        max_length=MAX_REF_LENGTH,
    ),
]
MessageId = Annotated[
    str,
    Wire(
        "Opaque, unique within the room: compare for equality only",
        max_length=MAX_ID_LENGTH,
    ),
]
RoomName = Annotated[
    str, Wire("A room name", pattern=_whole(ROOM_NAME_RE.pattern))
]
Target = Annotated[
    str,
    Wire(
        "A room name, or the connection's own inbox",
        pattern=_whole(ROOM_NAME_RE.pattern, INBOX_RE.pattern),
    ),
]
UserId = Annotated[
    str, Wire("A user id", min_length=1, max_length=MAX_ID_LENGTH)
]
Text = Annotated[
    str,
    Wire(
        "Message text: not only whitespace, no lone surrogate; delivered "
        "verbatim, render it as text, never as HTML",
        pattern=r"\S",
        min_length=1,
        setting="max_text_length",
    ),
]
Meta = Annotated[
    Mapping[str, Any],
    Wire(
        f"Any JSON object of at most {MAX_META_BYTES} bytes (compact, "
        "UTF-8), passed through unchanged"
    ),
]
Millis = Annotated[int, Wire("Server time, milliseconds since the epoch")]


# --------------------------------------------------------------------------
# Server -> client


class WelcomeFrame(TypedDict):
    """The first frame of every connection: who you are, your rooms."""

    type: Literal["welcome"]
    protocol: Literal[1]
    user: PublicUser
    rooms: Sequence[Target]
    inbox: NotRequired[Annotated[str, Wire("The connection's inbox")]]


class JoinedFrame(TypedDict):
    """A join's answer, or the notice that another member joined."""

    type: Literal["joined"]
    room: Target
    user: PublicUser
    recovered: NotRequired[
        Annotated[bool, Wire("After a join with since: it was in history")]
    ]
    last_read: NotRequired[
        Annotated[MessageId | None, Wire("Your read mark in a join reply")]
    ]
    unread: NotRequired[
        Annotated[int, Wire("Stored messages after last_read", minimum=0)]
    ]
    ref: NotRequired[Ref]
    """In an answer: the ref of the request it answers."""


class LeftFrame(TypedDict):
    """A leave's answer, or the notice that another member left."""

    type: Literal["left"]
    room: Target
    user: PublicUser
    reason: NotRequired[
        Annotated[
            str,
            Wire("The server took you out of the room", enum=("forbidden",)),
        ]
    ]
    ref: NotRequired[Ref]
    """In an answer: the ref of the request it answers."""


class PresenceFrame(TypedDict):
    """The answer to ``presence``: who is in the room, and how many."""

    type: Literal["presence"]
    room: RoomName
    users: Sequence[PublicUser]
    count: Annotated[int, Wire("Distinct users in the room", minimum=0)]
    ref: NotRequired[Ref]
    """In an answer: the ref of the request it answers."""


class ResyncFrame(TypedDict):
    """Events of the room may have been missed: re-sync with ``since``."""

    type: Literal["resync"]
    room: Target


class LaggedFrame(TypedDict):
    """``skipped`` frames of the room were dropped: you read too slowly."""

    type: Literal["lagged"]
    room: Target
    skipped: Annotated[int, Wire(minimum=1)]


class AckFrame(TypedDict):
    """A request with a ``ref`` succeeded; ``id``: the message's id."""

    type: Literal["ack"]
    ref: Ref
    id: NotRequired[MessageId]
    room: NotRequired[Target]


class RefreshedFrame(TypedDict):
    """The session now expires at ``expires_at`` (epoch seconds)."""

    type: Literal["refreshed"]
    expires_at: float | None
    ref: NotRequired[Ref]
    """In an answer: the ref of the request it answers."""


class ErrorFrame(TypedDict):
    """A request was refused; the connection stays open."""

    type: Literal["error"]
    code: Annotated[str, Wire("Stable: code against it", enum=ERROR_CODES)]
    message: Annotated[str, Wire("For humans")]
    ref: NotRequired[Ref]
    room: NotRequired[Target]


class TypingFrame(TypedDict):
    """``user`` is typing in ``room`` (ephemeral)."""

    type: Literal["typing"]
    room: Target
    user: PublicUser


class ReadFrame(TypedDict):
    """``user`` has read ``room`` up to message ``id`` (ephemeral)."""

    type: Literal["read"]
    room: Target
    user: PublicUser
    id: MessageId


class ReceiptsFrame(TypedDict):
    """The answer to ``receipts``: the last id read, by user id."""

    type: Literal["receipts"]
    room: Target
    read: Mapping[str, MessageId]
    ref: NotRequired[Ref]
    """In an answer: the ref of the request it answers."""


class PongFrame(TypedDict):
    """The answer to ``ping``."""

    type: Literal["pong"]


class MessagePayload(TypedDict):
    """A chat message as stored: a :class:`MessageFrame` without its id."""

    type: Literal["message"]
    room: Target
    to: NotRequired[Annotated[UserId, Wire("A direct message's recipient")]]
    user: PublicUser
    text: NotRequired[Text]
    ts: Millis
    meta: NotRequired[Meta]
    edited_ts: NotRequired[Millis]
    deleted: NotRequired[Literal[True]]


class MessageFrame(MessagePayload):
    """A chat message (``to``: a direct message; ``deleted``: no text)."""

    id: MessageId


class EditedFrame(TypedDict):
    """Message ``id`` now reads ``text``; ``user`` edited it."""

    type: Literal["edited"]
    room: RoomName
    id: MessageId
    text: Text
    user: PublicUser
    edited_ts: Millis


class DeletedFrame(TypedDict):
    """Message ``id`` was deleted by ``user`` at ``ts``."""

    type: Literal["deleted"]
    room: RoomName
    id: MessageId
    user: PublicUser
    ts: Millis


class HistoryFrame(TypedDict):
    """The answer to ``history``: stored messages, oldest first."""

    type: Literal["history"]
    room: Target
    messages: Sequence[MessageFrame]
    truncated: NotRequired[Literal[True]]
    ref: NotRequired[Ref]
    """In an answer: the ref of the request it answers."""


SERVER_FRAMES: tuple[type, ...] = (
    WelcomeFrame, JoinedFrame, LeftFrame, MessageFrame, EditedFrame,
    DeletedFrame, AckFrame, HistoryFrame, PresenceFrame, TypingFrame,
    ReadFrame, ReceiptsFrame, RefreshedFrame, PongFrame, LaggedFrame,
    ResyncFrame, ErrorFrame,
)  # fmt: skip
"""Every frame the server sends."""


# --------------------------------------------------------------------------
# Client -> server. Unknown fields are ignored; every request but ping
# takes a ref.


class JoinRequest(TypedDict):
    """Join a room; with ``since``, replay what came after that id."""

    type: Literal["join"]
    room: Target
    since: NotRequired[MessageId]
    ref: NotRequired[Ref]


class LeaveRequest(TypedDict):
    """Leave a room."""

    type: Literal["leave"]
    room: RoomName
    ref: NotRequired[Ref]


class MessageRequest(TypedDict):
    """Send a message to a room you are in."""

    type: Literal["message"]
    room: RoomName
    text: Text
    meta: NotRequired[Meta]
    ref: NotRequired[Ref]


class DirectMessageRequest(TypedDict):
    """Send a direct message to a user (never with ``room``)."""

    type: Literal["message"]
    to: UserId
    text: Text
    meta: NotRequired[Meta]
    ref: NotRequired[Ref]


class EditRequest(TypedDict):
    """Replace the text of a message of a room."""

    type: Literal["edit"]
    room: RoomName
    id: MessageId
    text: Text
    ref: NotRequired[Ref]


class DeleteRequest(TypedDict):
    """Delete a message of a room."""

    type: Literal["delete"]
    room: RoomName
    id: MessageId
    ref: NotRequired[Ref]


class HistoryRequest(TypedDict):
    """Ask for the newest ``limit`` stored messages before ``before``."""

    type: Literal["history"]
    room: Target
    limit: NotRequired[Annotated[int, Wire(minimum=1)]]
    before: NotRequired[MessageId]
    ref: NotRequired[Ref]


class PresenceRequest(TypedDict):
    """Ask who is in a room."""

    type: Literal["presence"]
    room: RoomName
    ref: NotRequired[Ref]


class RefreshRequest(TypedDict):
    """Extend the session with a new token for the same user."""

    type: Literal["refresh"]
    token: Annotated[str, Wire(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    ref: NotRequired[Ref]


class PingRequest(TypedDict):
    """An application-level heartbeat; answered with ``pong``."""

    type: Literal["ping"]


class TypingRequest(TypedDict):
    """Tell the room's other members that you are typing."""

    type: Literal["typing"]
    room: Target
    ref: NotRequired[Ref]


class DirectTypingRequest(TypedDict):
    """Tell a user, in their inbox, that you are typing to them."""

    type: Literal["typing"]
    to: UserId
    ref: NotRequired[Ref]


class ReadRequest(TypedDict):
    """Mark a room read up to message ``id``."""

    type: Literal["read"]
    room: Target
    id: MessageId
    ref: NotRequired[Ref]


class ReceiptsRequest(TypedDict):
    """Ask for every member's read mark in a room."""

    type: Literal["receipts"]
    room: Target
    ref: NotRequired[Ref]


CLIENT_FRAMES: tuple[type, ...] = (
    JoinRequest, LeaveRequest, MessageRequest, DirectMessageRequest,
    EditRequest, DeleteRequest, HistoryRequest, PresenceRequest,
    RefreshRequest, PingRequest, TypingRequest, DirectTypingRequest,
    ReadRequest, ReceiptsRequest,
)  # fmt: skip
"""Every JSON frame the server accepts (plain text is a message too)."""
