"""One connection's conversation, without I/O: frames in, actions out.

A :class:`Session` decides everything about a client's requests that
does not need a socket, the hub or a user's hook to decide: it parses and
validates frames (:func:`sanic_chat.protocol.parse`), charges them to the
connection's rate limit and closes on sustained abuse, checks that a
room was joined before it is used, asks the permission hooks it needs
and says what a refusal looks like, builds the ``welcome`` frame, tells
when the token expires, checks that a ``refresh`` is for the same user,
and turns a failed action into the ``error`` frame the client gets. The
I/O layer (:mod:`sanic_chat.endpoint`) feeds it frames and performs what
it asks for.

Each step is a generator of actions (:data:`Steps`), in the style of the
generator-based parsers of python-websockets: the session yields an
action and the driver performs it, then resumes the generator with the
action's result (``send``) or its failure (``throw``). So the logic reads
in order, as the code that awaited did, while the session itself never
awaits: a test drives it with plain calls and no event loop::

    steps = session.receive('{"type":"message","room":"a","text":"hi"}')
    next(steps)          # MayPublish(user, "a")
    steps.send(True)     # Publish("a", user, "hi")
    steps.send("1-0")    # StopIteration: no ref, no ack

Actions with a result: :class:`MayJoin`, :class:`MayPublish`,
:class:`MayModerate` and :class:`MayMessage` (bool), :class:`Moderate`
(the text to publish, or :class:`~sanic_chat.errors.Forbidden` thrown
in), :class:`Publish` and :class:`SendDirect` (the message id),
:class:`ReadMessage` (the stored message or None), :class:`MarkRead`
(moved: bool, or None for an id not in history), :class:`ReadHistory`,
:class:`ReadPresence` and :class:`ReadReceipts` (the frame built by the
hub through
:mod:`~sanic_chat.protocol`), :class:`Verify` (the refreshed ``User`` or
None). The others return None.

The steps of messages (``message``, ``edit``, ``delete``), of
``refresh`` and of the requests about people (direct messages,
``typing``, ``read``, ``receipts``) are module-level functions after the
class, which keeps the connection's state and dispatch; a request's
optional ``ref`` is echoed by its ``ack`` or ``error``. Every frame a
session replies with is built by :mod:`sanic_chat.protocol`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from . import protocol
from .config import ChatConfig
from .errors import (
    BroadcasterUnavailable,
    CloseCode,
    Forbidden,
    ProtocolError,
)
from .identity import User
from .limits import Throttle, TokenBucket
from .metrics import Metrics

logger = logging.getLogger(__name__)

# Replies are charged to the rate limit at one token per this many bytes
# (requests pay one per 16 KiB they carry).
REPLY_BYTES_PER_TOKEN = 65536
REQUEST_BYTES_PER_TOKEN = 16384


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``frame`` (JSON text) to the client as a reply."""

    frame: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with ``code`` and stop reading from it."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Expire:
    """Close with ``code`` at ``at`` (epoch seconds), replacing any timer.

    ``at`` None: cancel the timer, the identity does not expire.
    """

    at: float | None
    code: int = CloseCode.POLICY_VIOLATION
    reason: str = "token expired"


@dataclass(frozen=True, slots=True)
class WaitWritable:
    """Wait until the client has read enough of its replies."""


@dataclass(frozen=True, slots=True)
class MayJoin:
    """Ask the ``can_join`` hook; the result is a bool."""

    user: User
    room: str


@dataclass(frozen=True, slots=True)
class MayPublish:
    """Ask the ``can_publish`` hook; the result is a bool."""

    user: User
    room: str


@dataclass(frozen=True, slots=True)
class MayModerate:
    """Ask the ``can_moderate`` hook; the result is a bool."""

    user: User
    room: str


@dataclass(frozen=True, slots=True)
class Moderate:
    """Run ``before_publish``; the result is the text to publish.

    A refusal is :class:`~sanic_chat.errors.Forbidden`, thrown in.
    """

    user: User
    room: str
    text: str
    meta: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ReadMessage:
    """Read stored message ``id`` of ``room``.

    The result is its dict (current text), or None (not in history, or
    deleted).
    """

    room: str
    id: str


@dataclass(frozen=True, slots=True)
class EditMessage:
    """Store and send an edit of message ``id``."""

    room: str
    id: str
    user: User
    text: str


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    """Store and send the deletion of message ``id``."""

    room: str
    id: str
    user: User


@dataclass(frozen=True, slots=True)
class Join:
    """Join ``room`` (replaying after ``since``); the hub replies.

    The ``joined`` reply echoes ``ref``.
    """

    room: str
    since: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave ``room``, with ``reason`` and ``ref`` in the ``left`` reply."""

    room: str
    reason: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``text`` in ``room`` as ``user``; the result is the id.

    With a ``ref``, at most once per user and ``ref`` within the
    idempotency window: a resend's result is the first one's id.
    """

    room: str
    user: User
    text: str
    meta: dict[str, Any] | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ReadHistory:
    """Build the ``history`` frame of ``room``; the result is the frame."""

    room: str
    limit: int | None
    before: str | None
    max_bytes: int


@dataclass(frozen=True, slots=True)
class ReadPresence:
    """Build the ``presence`` frame of ``room``; the result is the frame."""

    room: str


@dataclass(frozen=True, slots=True)
class Verify:
    """Ask the authenticator who ``token`` is; the result is a User or None."""

    token: str


@dataclass(frozen=True, slots=True)
class SetUser:
    """The connection's identity is now ``user`` (after a refresh)."""

    user: User


@dataclass(frozen=True, slots=True)
class MayMessage:
    """Ask the ``can_message`` hook; the result is a bool."""

    user: User
    to: str


@dataclass(frozen=True, slots=True)
class SendDirect:
    """Send a DM from ``user`` to ``to``; the result is the sender's id.

    Stored in the recipient's inbox and in the sender's (once when they
    are the same user). With a ``ref``, at most once, as :class:`Publish`.
    """

    user: User
    to: str
    text: str
    meta: dict[str, Any] | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class JoinInbox:
    """Join the connection's own inbox ``name``, with no reply."""

    name: str


@dataclass(frozen=True, slots=True)
class Signal:
    """Publish ``frame`` in ``room``, unstored (``typing``, ``read``).

    Every member gets it but this connection.
    """

    room: str
    frame: str


@dataclass(frozen=True, slots=True)
class MarkRead:
    """Move the user's read mark in ``room`` to ``id``.

    The result: True (moved), False (not newer), None (not in history).
    """

    room: str
    id: str


@dataclass(frozen=True, slots=True)
class ReadReceipts:
    """Build the ``receipts`` frame of ``room``; the result is the frame."""

    room: str


Action = (
    Reply | Close | Expire | WaitWritable | MayJoin | MayPublish | Join | Leave
    | Publish | ReadHistory | ReadPresence | Verify | SetUser | MayModerate
    | Moderate | ReadMessage | EditMessage | DeleteMessage | MayMessage
    | SendDirect | JoinInbox | Signal | MarkRead | ReadReceipts
)  # fmt: skip
"""Everything a session asks of the I/O layer."""

Steps = Generator[Action, object, None]
"""A session's step: actions out, each action's result sent back in."""


class Session:
    """The sans-I/O state of one chat connection.

    Args:
        user: The connection's identity.
        config: The chat's settings (rate limit, default room, sizes).
        rooms: The rooms the connection is in, as the hub keeps them (a
            live view: the session only reads it).
        can_refresh: Whether the authenticator can verify a ``refresh``
            token (:class:`Verify`); without it a refresh is a
            ``bad_request``.
        moderates: Whether the chat has a ``before_publish`` hook
            (:class:`Moderate` is asked only then).
        metrics: Counters of the worker (``rate_limited``).
        label: What log lines call the connection.
        clock: Monotonic seconds, for the rate limit.
        inbox: The connection's inbox (its user's DMs), named in the
            ``welcome`` and joined first; None: no inbox, no DMs.
        typing: The worker's ``typing`` throttle (per user and room);
            None: a throttle of the session's own.
    """

    __slots__ = (
        "_can_refresh",
        "_config",
        "_granted",
        "_label",
        "_metrics",
        "_replied",
        "_rooms",
        "bucket",
        "inbox",
        "moderates",
        "typing",
        "user",
    )

    def __init__(
        self,
        user: User,
        config: ChatConfig,
        *,
        rooms: Collection[str],
        can_refresh: bool,
        moderates: bool = False,
        metrics: Metrics | None = None,
        label: object = "session",
        clock: Callable[[], float] = time.monotonic,
        inbox: str | None = None,
        typing: Throttle | None = None,
    ) -> None:
        self.user = user
        self.bucket = TokenBucket(config.rate_limit, config.rate_burst, clock)
        self._config = config
        self._rooms = rooms
        self._can_refresh = can_refresh
        self.moderates = moderates
        self._metrics = metrics or Metrics()
        self._label = label
        self._granted: Sequence[protocol.Join] = ()
        self._replied = 0
        self.inbox = inbox
        self.typing = typing or Throttle(TYPING_INTERVAL, clock=clock)

    @property
    def max_strikes(self) -> int:
        """``rate_limited`` strikes in a row before the 1008 close."""
        return self._config.rate_limit_strikes

    # ------------------------------------------------------------------
    # Setup

    def open(self, requests: Sequence[protocol.Join]) -> Steps:
        """Welcome the client: the rooms asked for at connect are checked.

        Yields a :class:`MayJoin` per room, the ``welcome`` frame with the
        rooms granted, a ``forbidden`` error per room refused and the
        token's :class:`Expire`. A failing hook fails the connection.
        """
        granted: list[protocol.Join] = []
        for request in requests:
            if (yield MayJoin(self.user, request.room)):
                granted.append(request)
        self._granted = granted
        rooms = [r.room for r in granted]
        yield Reply(protocol.welcome(self.user.public(), rooms, self.inbox))
        for request in requests:
            if request not in granted:
                yield Reply(
                    _error(_forbidden(request.room), None, request.room)
                )
        yield Expire(self.user.expires_at)

    def join_granted(self) -> Steps:
        """Join the rooms :meth:`open` granted, each once its replies drain.

        A join that fails is an ``error`` frame, not the connection's end.
        """
        granted, self._granted = self._granted, ()
        if self.inbox is not None:
            # First: DMs sent while the rooms are joined are not missed.
            yield from self._guarded(_one(JoinInbox(self.inbox)))
        for request in granted:
            yield WaitWritable()
            join = _one(Join(request.room, request.since))
            yield from self._guarded(join, None, request.room)

    # ------------------------------------------------------------------
    # Requests

    def pay_replies(self, replied: int) -> float | None:
        """Charge the reply bytes produced since :meth:`reading`.

        Replies cost by their size too: a small request can ask for a
        large reply. ``replied`` is the connection's running total.

        Returns:
            None when there was nothing to charge, else the seconds to
            wait before reading the next frame (possibly 0.0).
        """
        cost = (replied - self._replied) // REPLY_BYTES_PER_TOKEN
        if not cost:
            return None
        self.bucket.charge(cost)
        return self.bucket.delay()

    def reading(self, replied: int) -> None:
        """Note the connection's reply total as the next frame is read."""
        self._replied = replied

    def receive(self, data: str | bytes) -> Steps:
        """Act on one client frame.

        The frame is charged before it is parsed, by size too, so refused
        frames cost no work; ``join`` and ``leave`` then pay the churn
        cost. Over the limit the client gets ``rate_limited``, and after
        ``rate_limit_strikes`` of those in a row a :class:`Close`.
        """
        bucket, config = self.bucket, self._config
        if not bucket.take(1 + len(data) // REQUEST_BYTES_PER_TOKEN):
            yield self._rate_limited()
            return
        command: protocol.Command | ProtocolError
        try:
            command = protocol.parse(
                data,
                default_room=config.default_room,
                max_text_length=config.max_text_length,
            )
        except ProtocolError as exc:
            command = exc
        churn = isinstance(command, protocol.Join | protocol.Leave)
        if churn and not bucket.take(config.churn_cost - 1):
            yield self._rate_limited()
            return
        if isinstance(command, ProtocolError):
            yield Reply(_error(command))
            return
        ref = getattr(command, "ref", None)
        # A plain-text frame names no room: its errors echo none.
        plain = isinstance(command, protocol.Send) and data[:1] != "{"
        room = None if plain else getattr(command, "room", None)
        if isinstance(command, _MESSAGES):
            steps = _messages(self, command)
        elif isinstance(command, _PEOPLE):
            steps = _people(self, command)
        else:
            steps = self._dispatch(command)
        yield from self._guarded(steps, ref, room)

    def _rate_limited(self) -> Reply | Close:
        self._metrics.rate_limited += 1
        if self.bucket.strikes >= self._config.rate_limit_strikes:
            return Close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        return Reply(
            protocol.error(
                "rate_limited",
                f"too many frames; at most {self._config.rate_limit:g} per "
                "second, this one was not processed",
            )
        )

    def _guarded(
        self, steps: Steps, ref: str | None = None, room: str | None = None
    ) -> Steps:
        """Run ``steps``; turn a failure into an ``error`` frame.

        The frame echoes ``ref`` and ``room``, those of the request, if it
        had them.
        """
        try:
            yield from steps
        except ProtocolError as exc:
            yield Reply(_error(exc, ref, room))
        except BroadcasterUnavailable as exc:
            # The backend logs its state changes once; not a line per frame.
            logger.debug("broadcaster unavailable: %s", exc)
            yield Reply(
                protocol.error(
                    "unavailable", "chat backend unavailable, retry", ref, room
                )
            )
        except Exception:
            logger.exception("error while serving %s", self._label)
            yield Reply(
                protocol.error(
                    "internal_error", "internal server error", ref, room
                )
            )

    def _dispatch(self, command: protocol.Command) -> Steps:
        match command:
            case protocol.Join(room, since, ref):
                # The own inbox is the user's: no hook to ask.
                if not _own_inbox(self, room) and not (
                    yield MayJoin(self.user, room)
                ):
                    raise _forbidden(room)
                yield Join(room, since, ref)
            case protocol.Leave(room, ref):
                if protocol.is_inbox(room):
                    raise ProtocolError("forbidden", "an inbox is not left")
                yield Leave(room, None, ref)
            case protocol.History(room, limit, before, ref):
                _own_inbox(self, room)
                self._require_member(room)
                max_bytes = self._config.max_unsent_bytes // 4
                frame = yield ReadHistory(room, limit, before, max_bytes)
                yield Reply(protocol.with_ref(cast(str, frame), ref))
            case protocol.Presence(room, ref):
                if protocol.is_inbox(room):
                    raise ProtocolError(
                        "forbidden", "an inbox has no presence"
                    )
                self._require_member(room)
                frame = yield ReadPresence(room)
                yield Reply(protocol.with_ref(cast(str, frame), ref))
            case protocol.Refresh(token, ref):
                yield from _refresh(self, token, ref)
            case protocol.Ping():
                yield Reply(protocol.PONG)

    def require_member(self, room: str) -> None:
        """Refuse (``not_joined``) a request about a room not joined."""
        if room not in self._rooms:
            raise ProtocolError("not_joined", f"join room {room!r} first")

    _require_member = require_member


# ----------------------------------------------------------------------
# Requests about people: direct messages, typing, read receipts.

TYPING_INTERVAL = 2.0
"""Seconds between two ``typing`` of a user in a room that go out."""

_PEOPLE = (protocol.Direct, protocol.Typing, protocol.Read, protocol.Receipts)


def _own_inbox(session: Session, room: str) -> bool:
    """Tell whether ``room`` is the session's inbox; refuse other inboxes.

    Raises:
        ProtocolError: ``forbidden`` for anyone else's inbox.
    """
    if not protocol.is_inbox(room):
        return False
    if room != session.inbox:
        raise ProtocolError("forbidden", "not your inbox")
    return True


def _people(
    session: Session,
    command: protocol.Direct
    | protocol.Typing
    | protocol.Read
    | protocol.Receipts,
) -> Steps:
    user = session.user
    match command:
        case protocol.Direct(to, text, ref, meta):
            if session.inbox is None:
                raise ProtocolError("bad_request", "no direct messages here")
            if not (yield MayMessage(user, to)):
                raise ProtocolError("forbidden", "you may not message them")
            if session.moderates:
                # As for a room's message; the room is the recipient's inbox.
                inbox = protocol.inbox_name(to)
                text = yield from _moderated(user, inbox, text, meta)
            message_id = yield SendDirect(user, to, text, meta, ref)
            if ref is not None:
                yield Reply(
                    protocol.ack(ref, cast(str, message_id), session.inbox)
                )
        case protocol.Typing(target, to, ref):
            if to is not None:
                room = protocol.inbox_name(to)
                # Asked only for what goes out: extras cost no hook call.
                if session.typing.allow((user.id, room)):
                    if not (yield MayMessage(user, to)):
                        raise ProtocolError(
                            "forbidden", "you may not message them"
                        )
                    yield Signal(room, protocol.typing(room, user.public()))
            else:
                room = cast(str, target)
                _own_inbox(session, room)
                session.require_member(room)
                if session.typing.allow((user.id, room)):
                    yield Signal(room, protocol.typing(room, user.public()))
            if ref is not None:
                yield Reply(protocol.request_ack(ref, room=room))
        case protocol.Read(room, message_id, ref):
            _own_inbox(session, room)
            session.require_member(room)
            moved = yield MarkRead(room, message_id)
            if moved is None:
                raise ProtocolError(
                    "not_found", "message id not in the room's history"
                )
            if moved:
                notice = protocol.read(room, user.public(), message_id)
                yield Signal(room, notice)
            if ref is not None:
                yield Reply(
                    protocol.request_ack(ref, room=room, id=message_id)
                )
        case protocol.Receipts(room, ref):
            _own_inbox(session, room)
            session.require_member(room)
            receipts = yield ReadReceipts(room)
            yield Reply(protocol.with_ref(cast(str, receipts), ref))
            if ref is not None:
                yield Reply(protocol.request_ack(ref, room=room))


def _refresh(session: Session, token: str, ref: str | None = None) -> Steps:
    """Extend the session with a new token for the same identity."""
    if not session._can_refresh:
        raise ProtocolError(
            "bad_request", "this server's authenticator cannot refresh"
        )
    user = cast("User | None", (yield Verify(token)))
    if user is None or user.id != session.user.id:
        raise ProtocolError("forbidden", "token invalid or for another user")
    session.user = replace(
        session.user, claims=user.claims, expires_at=user.expires_at
    )
    yield SetUser(session.user)
    yield Expire(session.user.expires_at)
    # The new claims may no longer grant every room: ask again.
    for room in sorted(session._rooms):
        if not (yield MayJoin(session.user, room)):
            yield Leave(room, "forbidden")
    yield Reply(protocol.with_ref(protocol.refreshed(user.expires_at), ref))


# ----------------------------------------------------------------------
# Messages: send, edit, delete (steps outside the class, which stays
# about one job: the connection's conversation).

_MESSAGES = (protocol.Send, protocol.Edit, protocol.Delete)


def _messages(
    session: Session, command: protocol.Send | protocol.Edit | protocol.Delete
) -> Steps:
    user = session.user
    match command:
        case protocol.Send(room, text, ref, meta):
            session.require_member(room)
            if not (yield MayPublish(user, room)):
                raise _forbidden(room)
            if session.moderates:
                text = yield from _moderated(user, room, text, meta)
            message_id = yield Publish(room, user, text, meta, ref)
            if ref is not None:
                yield Reply(protocol.ack(ref, cast(str, message_id), room))
        case protocol.Edit(room, message_id, text, ref):
            session.require_member(room)
            if not (yield MayPublish(user, room)):
                raise _forbidden(room)
            message = yield from _changeable(user, room, message_id)
            if session.moderates:
                meta = message.get("meta")
                text = yield from _moderated(user, room, text, meta)
            yield EditMessage(room, message_id, user, text)
            if ref is not None:
                yield Reply(protocol.ack(ref, message_id, room))
        case protocol.Delete(room, message_id, ref):
            session.require_member(room)
            yield from _changeable(user, room, message_id)
            yield DeleteMessage(room, message_id, user)
            if ref is not None:
                yield Reply(protocol.ack(ref, message_id, room))


def _changeable(
    user: User, room: str, message_id: str
) -> Generator[Action, object, dict[str, Any]]:
    """The stored message ``user`` may edit or delete, or a refusal.

    Its author may; anyone else only if ``can_moderate`` says so.
    """
    message = yield ReadMessage(room, message_id)
    if not isinstance(message, dict):
        raise ProtocolError("not_found", "message id not in history")
    author = message.get("user")
    mine = isinstance(author, dict) and author.get("id") == user.id
    if not mine and not (yield MayModerate(user, room)):
        raise ProtocolError(
            "forbidden",
            "only its author or a moderator may change this message",
        )
    return message


def _moderated(
    user: User, room: str, text: str, meta: dict[str, Any] | None
) -> Generator[Action, object, str]:
    """The text ``before_publish`` lets through, or ``forbidden``."""
    try:
        result = yield Moderate(user, room, text, meta)
    except Forbidden as exc:
        raise ProtocolError(
            "forbidden", str(exc) or "message refused"
        ) from None
    return cast(str, result)


def _one(action: Action) -> Steps:
    yield action


def _forbidden(room: str) -> ProtocolError:
    return ProtocolError("forbidden", f"not allowed in room {room!r}")


def _error(
    exc: ProtocolError, ref: str | None = None, room: str | None = None
) -> str:
    return protocol.error(
        exc.code,
        exc.message,
        exc.ref if ref is None else ref,
        exc.room if room is None else room,
    )
