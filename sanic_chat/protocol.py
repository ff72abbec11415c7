"""Wire protocol v1: parse client frames, encode server frames.

Pure functions and value objects, no I/O, so the whole contract can be
read (and tested) in one place. The reference is ``docs/protocol.md``.

Client frames become :data:`Command` objects or raise
:class:`~sanic_chat.errors.ProtocolError`. The rules they are checked
against (:func:`check_room`, :func:`check_text`, :func:`check_id`,
:func:`check_meta`) are
the same for :meth:`Chat.publish <sanic_chat.Chat.publish>` and the HTTP
API, which turn the error into a ``ValueError`` or a 400/413 answer.

Every frame the server sends has a builder here (:func:`welcome`,
:func:`joined`, :func:`left`, :func:`presence`, :func:`resync`,
:func:`history`, :func:`ack`, :func:`refreshed`, :func:`lagged`,
:func:`error`, :data:`PONG`, :func:`message_payload`, :func:`edited`,
:func:`deleted`, :func:`direct_payload`, :func:`typing`, :func:`read`,
:func:`receipts`, :func:`request_ack`); no other module
writes a frame's JSON. A frame is encoded once and the same ``str`` is
sent to every recipient. Each builder fills in its frame's ``TypedDict``
from :mod:`sanic_chat.frames`, the shapes the AsyncAPI document
(:mod:`sanic_chat.asyncapi`) is generated from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from .config import ROOM_NAME_RE
from .errors import ProtocolError
from .frames import INBOX_RE as INBOX_RE
from .frames import MAX_ID_LENGTH as MAX_ID_LENGTH
from .frames import MAX_META_BYTES as MAX_META_BYTES
from .frames import MAX_REF_LENGTH as MAX_REF_LENGTH
from .frames import (
    MAX_TOKEN_LENGTH,
    AckFrame,
    DeletedFrame,
    EditedFrame,
    ErrorFrame,
    JoinedFrame,
    LaggedFrame,
    LeftFrame,
    MessagePayload,
    PongFrame,
    PresenceFrame,
    ReadFrame,
    ReceiptsFrame,
    RefreshedFrame,
    ResyncFrame,
    TypingFrame,
    WelcomeFrame,
)
from .frames import PublicUser as PublicUser

T = TypeVar("T")

_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False
)
# For values clients send (meta): NaN and Infinity are not JSON that a
# browser can read back, so they are refused rather than passed on.
_strict_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
)


def _direct(encoder: json.JSONEncoder) -> Callable[[object], str]:
    """``encoder.encode`` without the encoder object it builds per call.

    ``JSONEncoder.encode`` makes a new C encoder (``c_make_encoder``)
    for every frame; making it once saves about a third of a small
    frame's encoding (3.3 to 2.4 µs for a ``welcome``). Where the C
    accelerator is missing or takes other arguments (another Python),
    this is ``encoder.encode`` itself, as it is for a bare string.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        c_encode = make(  # type: ignore[misc]
            None, encoder.default, json.encoder.encode_basestring, None,
            ":", ",", False, False, True,
        )  # fmt: skip
        probe: dict[str, object] = {"a": [1, 2.5, None, True, "é\n"]}
        if "".join(c_encode(probe, 0)) != encoder.encode(probe):
            raise ValueError("a different encoding")
    except Exception:  # no accelerator, or another one: the plain path
        return encoder.encode
    join = "".join
    plain = encoder.encode

    def encode(value: object) -> str:
        if value.__class__ is str:
            return plain(value)  # its own fast path
        return join(c_encode(value, 0))

    return encode


_encode = _direct(_encoder)


def encode(frame: object) -> str:
    """Encode a server frame (or a JSON value) as compact JSON text."""
    return _encode(frame)


def now_ms() -> int:
    """Server time in integer milliseconds, as frames carry it."""
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------
# Client -> server


@dataclass(frozen=True, slots=True)
class Join:
    """``{"type":"join","room":R,"since"?:ID,"ref"?:S}``."""

    room: str
    since: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """``{"type":"leave","room":R,"ref"?:S}``."""

    room: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """``{"type":"message","room":R,"text":T,"meta"?:{},"ref"?:S}``.

    Or plain text (no meta, no ref).
    """

    room: str
    text: str
    ref: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """``{"type":"edit","room":R,"id":ID,"text":T,"ref"?:S}``."""

    room: str
    id: str
    text: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """``{"type":"delete","room":R,"id":ID,"ref"?:S}``."""

    room: str
    id: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """``{"type":"history","room":R,"limit"?:N,"before"?:ID,"ref"?:S}``."""

    room: str
    limit: int | None = None
    before: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """``{"type":"presence","room":R,"ref"?:S}``."""

    room: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """``{"type":"refresh","token":T,"ref"?:S}``: extend the session."""

    token: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type":"ping"}``: an application-level heartbeat."""


@dataclass(frozen=True, slots=True)
class Direct:
    """``{"type":"message","to":USER_ID,"text":T,"meta"?:{},"ref"?:S}``.

    A direct message.
    """

    to: str
    text: str
    ref: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    """``{"type":"typing","room":R}`` or ``{"type":"typing","to":ID}``.

    Exactly one of ``room`` and ``to`` is set.
    """

    room: str | None
    to: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Read:
    """``{"type":"read","room":R,"id":ID,"ref"?:S}``: read up to ``id``."""

    room: str
    id: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Receipts:
    """``{"type":"receipts","room":R,"ref"?:S}``: who read up to where."""

    room: str
    ref: str | None = None


Command = (
    Join | Leave | Send | Edit | Delete | History | Presence | Refresh | Ping
    | Direct | Typing | Read | Receipts
)  # fmt: skip


def parse(
    data: str | bytes, *, default_room: str, max_text_length: int
) -> Command:
    """Turn one client frame into a :data:`Command`.

    A text frame whose first non-whitespace character is not ``{`` is a
    plain-text message to ``default_room``, so the simplest clients
    (``ws.send("Hello")``) work.

    Raises:
        ProtocolError: ``bad_request`` for anything that is not a valid
            protocol object, ``too_large`` for text over the limit (or a
            ``meta`` over :data:`MAX_META_BYTES`). When the frame carried
            a valid ``ref``, the error's ``ref`` is set to it, and when
            it named a valid ``room`` (or inbox), its ``room``.
    """
    if not isinstance(data, str):
        raise ProtocolError(
            "bad_request", "binary frames are not supported; send JSON text"
        )
    if not data.lstrip().startswith("{"):
        return Send(default_room, check_text(data, max_text_length))
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_request", "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "frame must be a JSON object")
    try:
        return _command(obj, default_room, max_text_length)
    except ProtocolError as exc:
        ref = obj.get("ref")
        if isinstance(ref, str) and ref and exc.ref is None:
            with contextlib.suppress(ProtocolError):
                exc.ref = check_id(ref, "ref", MAX_REF_LENGTH)
        if exc.room is None:
            exc.room = echoed_room(obj.get("room"))
        raise


def echoed_room(name: object) -> str | None:
    """``name`` if it is a valid room or inbox name, else None.

    What an ``error`` frame may echo as its ``room``: never a string the
    server would refuse to name a room with.
    """
    if isinstance(name, str) and (
        valid_room(name) or INBOX_RE.fullmatch(name)
    ):
        return name
    return None


def _ref(obj: dict[str, Any]) -> str | None:
    return _optional_str(obj, "ref", MAX_REF_LENGTH)


def _command(
    obj: dict[str, Any], default_room: str, max_text_length: int
) -> Command:
    kind = obj.get("type")
    if (isinstance(kind, str) and kind in _PEOPLE) or (
        kind == "message" and obj.get("to") is not None
    ):
        return _people(kind, obj, max_text_length)
    if kind == "message":
        return Send(
            _room(obj),
            check_text(obj.get("text"), max_text_length),
            _optional_str(obj, "ref", MAX_REF_LENGTH),
            check_meta(obj.get("meta")),
        )
    if kind == "edit":
        return Edit(
            _room(obj),
            check_id(obj.get("id"), "id", MAX_ID_LENGTH),
            check_text(obj.get("text"), max_text_length),
            _optional_str(obj, "ref", MAX_REF_LENGTH),
        )
    if kind == "delete":
        return Delete(
            _room(obj),
            check_id(obj.get("id"), "id", MAX_ID_LENGTH),
            _optional_str(obj, "ref", MAX_REF_LENGTH),
        )
    if kind == "join":
        since = _optional_str(obj, "since", MAX_ID_LENGTH)
        return Join(_target(obj), since, _ref(obj))
    if kind == "leave":
        return Leave(_target(obj), _ref(obj))
    if kind == "history":
        before = _optional_str(obj, "before", MAX_ID_LENGTH)
        return History(_target(obj), _limit(obj), before, _ref(obj))
    if kind == "presence":
        return Presence(_target(obj), _ref(obj))
    if kind == "ping":
        return Ping()
    if kind == "refresh":
        token = _optional_str(obj, "token", MAX_TOKEN_LENGTH)
        if not token:
            raise ProtocolError("bad_request", "field 'token' is required")
        return Refresh(token, _ref(obj))
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "field 'type' must be a string")
    raise ProtocolError("bad_request", f"unknown frame type {kind[:32]!r}")


_PEOPLE = frozenset({"typing", "read", "receipts"})


def _people(kind: str, obj: dict[str, Any], max_text_length: int) -> Command:
    """Parse the requests about people: DMs, typing, read receipts.

    Each takes an optional ``ref``; a refusal carries it
    (:attr:`ProtocolError.ref`), so the client knows which request failed.
    """
    ref = None
    try:
        ref = _optional_str(obj, "ref", MAX_REF_LENGTH)
        if kind == "message":
            if obj.get("room") is not None:
                raise ProtocolError(
                    "bad_request", "give 'room' or 'to', not both"
                )
            to = check_user_id(obj.get("to"), "to")
            text = check_text(obj.get("text"), max_text_length)
            return Direct(to, text, ref, check_meta(obj.get("meta")))
        if kind == "typing":
            if obj.get("to") is not None:
                if obj.get("room") is not None:
                    raise ProtocolError(
                        "bad_request", "give 'room' or 'to', not both"
                    )
                return Typing(None, check_user_id(obj.get("to"), "to"), ref)
            return Typing(_target(obj), None, ref)
        if kind == "read":
            message_id = check_id(obj.get("id"), "id", MAX_ID_LENGTH)
            return Read(_target(obj), message_id, ref)
        return Receipts(_target(obj), ref)
    except ProtocolError as exc:
        exc.ref = ref
        raise


# --------------------------------------------------------------------------
# Validation of what clients send: one rule each, shared by the socket
# (parse), server code (Chat.publish) and the HTTP API, which turn the
# ProtocolError into their own answer (a ValueError, a 400 or a 413).

ROOM_ERROR = f"field 'room' must match ^{ROOM_NAME_RE.pattern}$"
"""The message for an invalid room name, wherever one is refused."""


def valid_room(name: object) -> bool:
    """Tell whether ``name`` is a valid room name."""
    return isinstance(name, str) and bool(ROOM_NAME_RE.fullmatch(name))


def check_room(name: object) -> str:
    """Return ``name`` if it is a valid room name.

    Raises:
        ProtocolError: ``bad_request`` with :data:`ROOM_ERROR`.
    """
    if not valid_room(name):
        raise ProtocolError("bad_request", ROOM_ERROR)
    return cast(str, name)


def encodable(text: str) -> bool:
    r"""Tell whether ``text`` can be sent as UTF-8.

    JSON allows escaped lone surrogates (``"\ud800"``) that Python
    decodes into a ``str`` no socket can send; accepting one would make
    every recipient's connection fail.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: object, max_length: int) -> str:
    """Return ``text`` if it can be published as a chat message.

    Checked in this order: a string, encodable as UTF-8 (no lone
    surrogate), not empty or only whitespace, at most ``max_length``
    characters.

    Raises:
        ProtocolError: ``too_large`` when it is longer than
            ``max_length``, ``bad_request`` for every other failure.
    """
    if not isinstance(text, str):
        raise ProtocolError("bad_request", "field 'text' must be a string")
    if not encodable(text):
        raise ProtocolError(
            "bad_request",
            "field 'text' contains a lone surrogate (not encodable as UTF-8)",
        )
    if not text.strip():
        raise ProtocolError("bad_request", "field 'text' must not be empty")
    if len(text) > max_length:
        raise ProtocolError(
            "too_large", f"text is longer than {max_length} characters"
        )
    return text


def check_id(value: object, field: str, max_length: int) -> str:
    """Return ``value`` if it is a usable ref, message id or token.

    A string of at most ``max_length`` characters (:data:`MAX_REF_LENGTH`
    for refs, :data:`MAX_ID_LENGTH` for message ids), encodable as UTF-8.

    Raises:
        ProtocolError: ``bad_request`` naming ``field``.
    """
    if (
        not isinstance(value, str)
        or len(value) > max_length
        or not encodable(value)
    ):
        raise ProtocolError(
            "bad_request",
            f"field {field!r} must be a string of at most {max_length} "
            "characters",
        )
    return value


def check_meta(value: object) -> dict[str, Any] | None:
    """Return ``value`` if it can travel as a message's ``meta``.

    ``None`` (no meta) or a JSON object of at most :data:`MAX_META_BYTES`
    bytes encoded as the server sends it (compact, UTF-8); its strings
    encodable as UTF-8, and no ``NaN`` or ``Infinity``.

    Raises:
        ProtocolError: ``too_large`` over the size, ``bad_request`` for
            anything else.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", "field 'meta' must be an object")
    try:
        size = len(_strict_encoder.encode(value).encode("utf-8"))
    except (ValueError, RecursionError, TypeError):
        # ValueError: NaN, or a lone surrogate (UnicodeEncodeError).
        raise ProtocolError(
            "bad_request", "field 'meta' is not encodable JSON"
        ) from None
    if size > MAX_META_BYTES:
        raise ProtocolError(
            "too_large", f"meta is larger than {MAX_META_BYTES} bytes"
        )
    return value


def _room(obj: dict[str, Any]) -> str:
    return check_room(obj.get("room"))


def _target(obj: dict[str, Any]) -> str:
    """A room name, or an inbox name (only the session's own is allowed)."""
    name = obj.get("room")
    if isinstance(name, str) and INBOX_RE.fullmatch(name):
        return name
    return check_room(name)


# --------------------------------------------------------------------------
# Inboxes: the room of each user's direct messages.

_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,63}")


def inbox_name(user_id: str) -> str:
    """Return the name of ``user_id``'s inbox.

    ``"@" + user_id`` when the id is spelt with room-name characters and
    at most 63 long; else ``"@~"`` and 32 hex digits of its BLAKE2b hash,
    so that any id (any length, any character) has a valid channel name
    and no two ids share one.
    """
    if _PLAIN_ID.fullmatch(user_id):
        return "@" + user_id
    digest = hashlib.blake2b(user_id.encode(), digest_size=16).hexdigest()
    return "@~" + digest


def is_inbox(name: str) -> bool:
    """Tell whether ``name`` is an inbox name (anyone's)."""
    return name.startswith("@")


def check_user_id(value: object, field: str) -> str:
    """Return ``value`` if it can be a user id (the target of a DM).

    A non-empty string of at most :data:`MAX_ID_LENGTH` characters,
    encodable as UTF-8.

    Raises:
        ProtocolError: ``bad_request`` naming ``field``.
    """
    if value == "":
        raise ProtocolError("bad_request", f"field {field!r} is empty")
    return check_id(value, field, MAX_ID_LENGTH)


def _optional_str(
    obj: dict[str, Any], key: str, max_length: int
) -> str | None:
    value = obj.get(key)
    return None if value is None else check_id(value, key, max_length)


def _limit(obj: dict[str, Any]) -> int | None:
    value = obj.get("limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProtocolError(
            "bad_request", "field 'limit' must be a positive integer"
        )
    return value


# --------------------------------------------------------------------------
# Server -> client
#
# Every frame the server sends is built here, encoded once; callers pass
# the same text (or its wire frame) to every recipient. Field order is
# part of the bytes on the wire: keep it.

# Each builder fills in the TypedDict of its frame (sanic_chat.frames),
# so mypy checks it against the shape the AsyncAPI document publishes.


def with_ref(frame: str, ref: str | None) -> str:
    """``frame`` with the request's ``"ref"`` as its last field.

    Answers (``joined``, ``left``, ``history``, ``presence``,
    ``receipts``, ``refreshed``) echo the ``ref`` of the request they
    answer, so a client matches them as it matches ``ack`` and ``error``.
    ``frame`` is an encoded JSON object; ``None`` leaves it as it is.
    """
    if ref is None:
        return frame
    return f'{frame[:-1]},"ref":{encode(ref)}}}'


def welcome(
    user: PublicUser, rooms: Sequence[str], inbox: str | None = None
) -> str:
    """Encode ``welcome``: the first frame, with the rooms granted.

    ``inbox`` names the connection's inbox (no such field when None).
    """
    frame: WelcomeFrame = {
        "type": "welcome", "protocol": 1, "user": user, "rooms": rooms
    }  # fmt: skip
    if inbox is not None:
        frame["inbox"] = inbox
    return encode(frame)


def joined(
    room: str,
    user: PublicUser,
    recovered: bool | None = None,
    last_read: str | None = None,
    unread: int | None = None,
) -> str:
    """Encode ``joined``: a join reply, or the notice other members get.

    Args:
        room: The room.
        user: Who joined.
        recovered: Only in the reply to a join with ``since``: whether
            that id was still in history (``None``: no such field).
        last_read: With ``unread``, in a join reply: the last message
            id the user marked read (``null`` if none).
        unread: Only in a join reply: stored messages after
            ``last_read``; ``None``: neither field (the backend keeps no
            read receipts). Both are the frame's last fields.
    """
    frame: JoinedFrame = {"type": "joined", "room": room, "user": user}
    if recovered is not None:
        frame["recovered"] = recovered
    if unread is not None:
        frame["last_read"] = last_read
        frame["unread"] = unread
    return encode(frame)


def left(room: str, user: PublicUser, reason: str | None = None) -> str:
    """Encode ``left``: a leave reply, or the notice other members get.

    Args:
        room: The room.
        user: Who left.
        reason: Why the server took the user out (``"forbidden"``);
            ``None`` (no such field) when the client asked.
    """
    frame: LeftFrame = {"type": "left", "room": room, "user": user}
    if reason is not None:
        frame["reason"] = reason
    return encode(frame)


def presence(room: str, users: Sequence[PublicUser], count: int) -> str:
    """Encode the ``presence`` reply: who is in ``room``, and how many."""
    frame: PresenceFrame = {
        "type": "presence", "room": room, "users": users, "count": count
    }  # fmt: skip
    return encode(frame)


def resync(room: str) -> str:
    """Encode ``resync``: events of ``room`` may have been missed."""
    frame: ResyncFrame = {"type": "resync", "room": room}
    return encode(frame)


def lagged(room: str, skipped: int) -> str:
    """Encode ``lagged``: ``skipped`` frames of ``room`` were dropped."""
    frame: LaggedFrame = {"type": "lagged", "room": room, "skipped": skipped}
    return encode(frame)


def ack(ref: str, message_id: str, room: str) -> str:
    """Encode ``ack``: the message sent with ``ref`` got ``message_id``."""
    frame: AckFrame = {
        "type": "ack", "ref": ref, "id": message_id, "room": room
    }  # fmt: skip
    return encode(frame)


def refreshed(expires_at: float | None) -> str:
    """Encode ``refreshed``: the session now expires at ``expires_at``."""
    frame: RefreshedFrame = {"type": "refreshed", "expires_at": expires_at}
    return encode(frame)


def request_ack(ref: str, *, room: str, id: str | None = None) -> str:
    """Encode the ``ack`` of a request that is not a message.

    ``{"type":"ack","ref":REF,"room":R,"id"?:ID}``: the room of the
    request and, for ``read``, the id marked.
    """
    frame: AckFrame = {"type": "ack", "ref": ref, "room": room}
    if id is not None:
        frame["id"] = id
    return encode(frame)


def error(
    code: str,
    message: str,
    ref: str | None = None,
    room: str | None = None,
) -> str:
    """Encode ``{"type":"error","code":C,"message":M,"ref"?:S,"room"?:R}``.

    ``ref`` and ``room``: those of the request refused, if it carried
    them (no such fields otherwise, so the frame of a request without
    either is what it always was).
    """
    frame: ErrorFrame = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if room is not None:
        frame["room"] = room
    return encode(frame)


def typing(room: str, user: PublicUser) -> str:
    """Encode ``typing``: ``user`` is typing in ``room`` (ephemeral)."""
    frame: TypingFrame = {"type": "typing", "room": room, "user": user}
    return encode(frame)


def read(room: str, user: PublicUser, message_id: str) -> str:
    """Encode ``read``: ``user`` has read ``room`` up to ``message_id``."""
    frame: ReadFrame = {
        "type": "read", "room": room, "user": user, "id": message_id
    }  # fmt: skip
    return encode(frame)


def receipts(room: str, marks: Mapping[str, str]) -> str:
    """Encode the ``receipts`` reply: last read id by user id."""
    frame: ReceiptsFrame = {"type": "receipts", "room": room, "read": marks}
    return encode(frame)


_pong: PongFrame = {"type": "pong"}
PONG = encode(_pong)
"""The ``pong`` frame, the answer to a ``ping``."""


def message_payload(
    room: str,
    user: PublicUser,
    text: str,
    ts: int,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """Encode a chat message without its id, as broadcasters carry it.

    The id is assigned by the broadcaster at publish time and spliced in
    by :func:`with_id`, so the message is still encoded only once.
    ``meta`` is carried only when given, so messages without one are
    the same bytes as before it existed.
    """
    frame: MessagePayload = {
        "type": "message", "room": room, "user": user, "text": text, "ts": ts
    }  # fmt: skip
    if meta is not None:
        frame["meta"] = meta
    return encode(frame)


EDITED_PREFIX = '{"type":"edited"'
DELETED_PREFIX = '{"type":"deleted"'
REVISION_PREFIXES = (EDITED_PREFIX, DELETED_PREFIX)
"""How stored ``edited`` and ``deleted`` payloads begin (see
:mod:`sanic_chat.revisions`): they carry their target's id, not their
own, so the hub sends them as they are stored."""


def edited(
    room: str, message_id: str, text: str, user: PublicUser, edited_ts: int
) -> str:
    """Encode ``edited``: ``user`` changed message ``message_id``'s text."""
    frame: EditedFrame = {
        "type": "edited", "room": room, "id": message_id, "text": text,
        "user": user, "edited_ts": edited_ts,
    }  # fmt: skip
    return encode(frame)


def deleted(room: str, message_id: str, user: PublicUser, ts: int) -> str:
    """Encode ``deleted``: ``user`` deleted message ``message_id``.

    ``ts`` (when) is stored for the archive and history; clients may use
    it.
    """
    frame: DeletedFrame = {
        "type": "deleted", "room": room, "id": message_id, "user": user,
        "ts": ts,
    }  # fmt: skip
    return encode(frame)


def tombstone(message: Mapping[str, Any]) -> str:
    """Encode a deleted message as history lists it, without its id.

    ``{"type":"message","room":R,"user":U,"ts":MS,"deleted":true}``:
    the author and time stay, the text and meta are gone.
    """
    frame: MessagePayload = {
        "type": "message", "room": message["room"], "user": message["user"],
        "ts": message["ts"], "deleted": True,
    }  # fmt: skip
    return encode(frame)


def direct_payload(
    inbox: str,
    to: str,
    user: PublicUser,
    text: str,
    ts: int,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """Encode one copy of a direct message, without its id.

    ``inbox`` is the inbox it is stored in (the recipient's or the
    sender's), ``to`` the recipient's user id; ``meta`` as in
    :func:`message_payload` (no such field when None).
    """
    frame: MessagePayload = {
        "type": "message", "room": inbox, "to": to, "user": user,
        "text": text, "ts": ts,
    }  # fmt: skip
    if meta is not None:
        frame["meta"] = meta
    return encode(frame)


def with_id(payload: str, message_id: str) -> str:
    """Return ``payload`` (a JSON object text) with ``"id"`` prepended."""
    return '{"id":' + encode(message_id) + "," + payload[1:]


def history(room: str, messages: Sequence[str], truncated: bool) -> str:
    """Encode the ``history`` reply from already encoded ``messages``.

    The messages are spliced in as they are stored, never decoded and
    encoded again; so mypy cannot check this one against its shape,
    :class:`~sanic_chat.frames.HistoryFrame`: the tests do.

    Args:
        room: The room.
        messages: Message texts, oldest first (see :func:`fit`).
        truncated: Whether older messages were left out to fit a size;
            the field is present only when true.
    """
    return '{"type":"history","room":' + _messages(room, messages, truncated)


def history_body(room: str, messages: Sequence[str], truncated: bool) -> str:
    """Encode the HTTP API's history answer: :func:`history`, no type."""
    return '{"room":' + _messages(room, messages, truncated)


def _messages(room: str, messages: Sequence[str], truncated: bool) -> str:
    return (
        encode(room)
        + ',"messages":['
        + ",".join(messages)
        + ('],"truncated":true}' if truncated else "]}")
    )


def fit(
    items: Sequence[T], render: Callable[[T], str], max_bytes: int | None
) -> tuple[list[str], bool]:
    """Render the newest of ``items`` (oldest first) that fit ``max_bytes``.

    Items are rendered newest first and only while they fit, so a large
    history is never rendered whole to be cut afterwards.

    Returns:
        The texts kept, still oldest first, and whether any was left out.
    """
    if max_bytes is None:
        return [render(item) for item in items], False
    kept: list[str] = []
    total = 0
    for item in reversed(items):
        text = render(item)
        total += len(text.encode()) + 1  # and its comma
        if total > max_bytes:
            break
        kept.append(text)
    kept.reverse()
    return kept, len(kept) < len(items)
