"""The HTTP API: rooms, history, presence, receipts, messages, DMs.

Disconnecting users and health too.

Routes live in the chat's blueprint under ``api_path`` (``/api``).
Request bodies and queries are validated with pydantic models, after the
caller is authenticated (:func:`read_json`, :func:`read_query`): pydantic
because its errors name each invalid field, which the API returns as
``fields``. sanic-ext is not needed; where the app uses it, every route
is described in its OpenAPI document (:mod:`sanic_chat.routes`).

Every route identifies the caller with the chat's own authenticator, as
``/ws`` does. Reading a room needs the right to join it (``can_join``);
publishing, editing and deleting messages and disconnecting need the
*system* permission: the ``X-API-Key`` header equal to
``CHAT_API_KEY``, or a token whose claims have ``"chat_admin": true``.
A message published here takes the same path as one sent over a
socket: same ids, order, history, limits, hooks and fan-out to every
worker.

Routes with a body authenticate before reading it: publishing and
editing are streaming routes (Sanic does not buffer the body first)
that check the caller, then ``Content-Type: application/json`` (415),
then the size (413 past :func:`publish_body_limit`, from
``Content-Length`` before reading, or while reading a chunked body),
and only then parse and validate it.

Errors are JSON: ``{"error": {"code": ..., "message": ..., "fields":
[...]}}`` with 400, 401, 403, 404, 413, 415, 429 or 503.
"""

from __future__ import annotations

import hmac
import json as jsonlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as ModelError
from sanic import HTTPResponse, Request
from sanic.response import json

from .auth import (
    AuthenticatorFailed,
    authenticate,
    log_unauthorized,
    refuse,
)
from .chat import Chat
from .config import ChatConfig
from .errors import (
    BadCredentials,
    BroadcasterUnavailable,
    Forbidden,
    ProtocolError,
    Unauthorized,
)
from .identity import NAME_RULE, SYSTEM_USER, User, valid_display_name
from .limits import PublishLimiter
from .protocol import (
    MAX_ID_LENGTH,
    check_meta,
    check_room,
    check_text,
    check_user_id,
    fit,
    history_body,
    inbox_name,
)

API_KEY_HEADER = "x-api-key"
ADMIN_CLAIM = "chat_admin"
MIN_BODY_LIMIT = 64 * 1024
# The longest JSON spelling of one character: one outside the BMP as two
# "\\uXXXX" escapes.
_JSON_BYTES_PER_CHAR = 12
_Model = TypeVar("_Model", bound=BaseModel)


class Sender(BaseModel):
    """Whom a published message shows as its sender."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128, examples=["ci"])
    name: str = Field(min_length=1, max_length=32, examples=["CI bot"])


class PublishBody(BaseModel):
    """A message to publish into a room."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, examples=["Deploy finished"])
    user: Sender | None = Field(
        default=None,
        description="Sender shown to clients; the system user if omitted.",
    )
    meta: dict[str, Any] | None = Field(
        default=None,
        description="A JSON object carried with the message (replies, "
        "attachments, mentions), at most 2 KB encoded.",
    )


class EditBody(BaseModel):
    """The new text of a message (a moderator's edit)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, examples=["[removed by a moderator]"])
    user: Sender | None = Field(
        default=None,
        description="Editor shown to clients; the system user if omitted.",
    )


class HistoryQuery(BaseModel):
    """Paging of a room's history by message id.

    ``token`` and ``name`` are read by the authenticator, as on every
    route (docs/http-api.md); they are accepted here so that the strict
    model does not refuse them.
    """

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=1000)
    before: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_LENGTH
    )
    after: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_LENGTH
    )
    token: str | None = Field(
        default=None,
        description="The caller's token, when it cannot send the "
        "Authorization header (redacted from logs; prefer the header).",
    )
    name: str | None = Field(
        default=None, description="Display name of an anonymous guest."
    )


class ApiError(Exception):
    """An API error answer: status, stable code, message, fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.reason = fields, reason

    def response(self) -> HTTPResponse:
        """The JSON answer."""
        return refuse(
            self.status,
            self.code,
            self.message,
            self.fields,
            reason=self.reason,
        )


def error_response(exc: Exception) -> HTTPResponse:
    """Turn an exception raised on an API route into its JSON answer."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, BroadcasterUnavailable):
        return ApiError(
            503, "unavailable", "chat backend unavailable, retry"
        ).response()
    status = getattr(exc, "status_code", 500)
    if status == 413:
        return ApiError(413, "too_large", "request too large").response()
    if 400 <= status < 500:
        return ApiError(status, "bad_request", str(exc)).response()
    raise exc


def _field_list(
    errors: Iterable[Mapping[str, Any]],
) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(p) for p in error["loc"]),
            "message": error["msg"],
        }
        for error in errors
    ]


def publish_body_limit(config: ChatConfig) -> int:
    """Largest publish body accepted, in bytes (413 past it).

    64 KiB, or more when ``max_text_length`` needs it: room for the
    text, the sender's id and name at 12 bytes a character (the longest
    JSON escape), and some syntax. Far below Sanic's ``REQUEST_MAX_SIZE``
    (100 MB), which still bounds every other route.
    """
    chars = config.max_text_length + 128 + 32  # text, sender id and name
    return max(MIN_BODY_LIMIT, _JSON_BYTES_PER_CHAR * chars + 1024)


class _BodyStream(Protocol):
    async def read(self) -> bytes | None: ...


async def refuse_body(request: Request) -> None:
    """Refuse a body on a route that takes none, without reading it.

    Such routes are registered with ``ignore_body``: Sanic does not
    buffer the body, and discards it after the answer (closing the
    connection past ``REQUEST_MAX_SIZE``). An empty body
    (``Content-Length: 0``) is consumed here, so that Sanic does not
    log it as unread.

    Raises:
        ApiError: 400 when the request has a body.
    """
    headers = request.headers
    if (
        "transfer-encoding" in headers
        or headers.get("content-length", "0") != "0"
    ):
        raise ApiError(400, "bad_request", "this route takes no body")
    stream = cast(_BodyStream | None, request.stream)
    if "content-length" in headers and stream is not None:
        await stream.read()


async def read_json(
    request: Request, model: type[_Model], limit: int
) -> _Model:
    """Read a JSON body of at most ``limit`` bytes and validate it.

    For streaming routes, after the caller is authenticated: nothing is
    read before the media type and the declared size are checked.

    Raises:
        ApiError: 415 (not ``application/json``), 413 (over ``limit``),
            400 (not JSON, or invalid for ``model``, with ``fields``).
    """
    media_type = request.headers.get("content-type", "")
    if media_type.partition(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        )
    too_large = ApiError(413, "too_large", f"body over {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit:  # Sanic checked it
        raise too_large
    stream = cast(_BodyStream | None, request.stream)
    chunks: list[bytes] = []
    size = 0
    while stream is not None and (chunk := await stream.read()) is not None:
        size += len(chunk)
        if size > limit:  # a chunked body: stop reading at the bound
            raise too_large
        chunks.append(chunk)
    try:
        data = jsonlib.loads(b"".join(chunks))
    except (ValueError, RecursionError):  # RecursionError: [[[[...
        raise ApiError(
            400,
            "bad_request",
            "invalid request",
            [{"field": "", "message": "the body is not valid JSON"}],
        ) from None
    return _validated(model, data)


def read_query(request: Request, model: type[_Model]) -> _Model:
    """Validate the request's query parameters with ``model``.

    A parameter given once is a string; one repeated is a list, which
    ``model`` refuses unless that field is a list.

    Raises:
        ApiError: 400 with ``fields`` when the query is invalid.
    """
    data = {
        key: values[0] if len(values) == 1 else values
        for key, values in request.args.items()
    }
    return _validated(model, data)


def _validated(model: type[_Model], data: object) -> _Model:
    """``model`` from ``data``, or the API's 400 naming each bad field."""
    try:
        return model.model_validate(data)
    except ModelError as exc:
        raise ApiError(
            400, "bad_request", "invalid request", _field_list(exc.errors())
        ) from None


class Caller:
    """Who is calling the API and what they may do."""

    __slots__ = ("system", "user")

    def __init__(self, user: User | None, system: bool) -> None:
        self.user, self.system = user, system


async def identify(chat: Chat, request: Request) -> Caller:
    """Authenticate an API request, or raise 401/403."""
    key = chat.config.api_key
    offered = request.headers.get(API_KEY_HEADER)
    if offered is not None:
        if key and hmac.compare_digest(offered.encode(), key.encode()):
            return Caller(None, system=True)
        chat.metrics.auth_failure("invalid_api_key")
        log_unauthorized(request, "invalid_api_key")
        raise ApiError(
            401, "unauthorized", "invalid API key", reason="invalid_api_key"
        )
    try:
        user = await authenticate(chat, request)
    except Unauthorized as exc:
        chat.metrics.auth_failure("unauthorized")
        raise ApiError(
            401, "unauthorized", exc.message, reason=exc.reason
        ) from None
    except Forbidden as exc:
        chat.metrics.auth_failure("forbidden")
        raise ApiError(403, "forbidden", str(exc) or "not allowed") from None
    except BadCredentials as exc:
        raise ApiError(400, "bad_request", exc.message) from None
    except AuthenticatorFailed:
        raise ApiError(
            500, "internal_error", "authentication failed"
        ) from None
    return Caller(user, system=user.claims.get(ADMIN_CLAIM) is True)


def _valid_room(room: str) -> None:
    try:
        check_room(room)
    except ProtocolError as exc:
        raise ApiError(400, exc.code, exc.message) from None


async def _readable_room(chat: Chat, caller: Caller, room: str) -> None:
    _valid_room(room)
    user = caller.user
    if (
        user is not None
        and not caller.system
        and not await chat.hooks.may_join(user, room)
    ):
        raise ApiError(403, "forbidden", f"not allowed in room {room!r}")


def _require_system(caller: Caller) -> None:
    if not caller.system:
        raise ApiError(
            403,
            "forbidden",
            f"needs the {API_KEY_HEADER} header or the {ADMIN_CLAIM} claim",
        )


# ----------------------------------------------------------------------
# Handlers. Each takes the chat as its first argument; the blueprint
# binds it (see ChatBlueprint.register).


async def list_rooms(chat: Chat, request: Request) -> HTTPResponse:
    """Rooms with members on this worker, and their member counts.

    ``members`` counts connections on this worker; ``users`` is the number
    of distinct users in the room on every worker (from presence).
    """
    caller = await identify(chat, request)
    await refuse_body(request)
    rooms = []
    for name, local in sorted(chat.room_sizes().items()):
        user = caller.user
        if (
            user is not None
            and not caller.system
            and not await chat.hooks.may_join(user, name)
        ):
            continue
        info = await chat.presence(name)
        rooms.append({"room": name, "members": local, "users": info.count})
    return json({"rooms": rooms})


async def room_history(
    chat: Chat,
    limiter: PublishLimiter,
    request: Request,
    room: str,
) -> None:
    """A room's stored messages, oldest first, with id paging.

    Without ``before``/``after``: the newest ``limit`` messages. With
    ``before``: the newest ``limit`` older than that id; with ``after``:
    the oldest ``limit`` newer than it. 404 for a room with no history
    and no members, or an id no longer in history. At most a quarter of
    ``max_unsent_bytes`` of messages per answer: when the newest ones
    fill it, the older ones are left out and ``truncated`` is true (ask
    again with ``before``). Rate limited per user (per address for
    guests), by count and by size; 503 while the worker holds too many
    unsent bytes. The query is read as a :class:`HistoryQuery`.
    """
    caller = await identify(chat, request)
    await refuse_body(request)
    query = read_query(request, HistoryQuery)
    await _readable_room(chat, caller, room)
    unsent = chat.hub.unsent
    if unsent.full:
        raise ApiError(503, "overloaded", "server busy, retry later")
    key = _limit_key(caller, request)
    if key is not None and not limiter.allow(key):
        chat.metrics.rate_limited += 1
        raise ApiError(429, "rate_limited", "too many requests, slow down")
    read: list[int] = []
    page = await chat.hub.messages.page(
        room,
        query.limit,
        before=query.before,
        after=query.after,
        charge=read.append,
    )
    if not page.found:
        if key is not None:
            # The whole history was read for an id that is not in it.
            limiter.charge(key, sum(read) // _BYTES_PER_TOKEN)
        raise ApiError(404, "not_found", "message id not in history")
    if not page.events and not _known(chat, room) and not query.before:
        info = await chat.presence(room)
        if not info.count:
            raise ApiError(404, "not_found", f"no room {room!r}")
    # Stored messages are already JSON: splice them, do not re-encode.
    texts, truncated = fit(
        page.events, chat.hub.event_text, chat.config.max_unsent_bytes // 4
    )
    body = history_body(room, texts, truncated).encode()
    if key is not None:
        # The whole history was read, whatever part of it is sent.
        cost = max(len(body), sum(read))
        limiter.charge(key, cost // _BYTES_PER_TOKEN)
    # Written in pieces, each once the client took the previous ones, and
    # counted as the worker's unsent bytes until then: a client that does
    # not read holds at most one piece in the socket (Sanic's response
    # timeout ends it).
    unsent.in_flight += len(body)
    try:
        response = await request.respond(content_type="application/json")
        for start in range(0, len(body), _BYTES_PER_TOKEN):
            await response.send(body[start : start + _BYTES_PER_TOKEN])
        await response.eof()
    finally:
        unsent.in_flight -= len(body)


# History answers cost one more token of the caller's limit per this
# many bytes; also the size of the pieces they are written in.
_BYTES_PER_TOKEN = 65536


def _limit_key(caller: Caller, request: Request) -> str | None:
    """Whose rate limit an API read is charged to (None: the system's).

    Guests get a new id per request, so they share their address's.
    """
    if caller.system:
        return None
    user = caller.user
    if user is None or user.id.startswith("guest-"):
        return "ip:" + (request.client_ip or "")
    return "user:" + user.id


async def room_presence(
    chat: Chat, request: Request, room: str
) -> HTTPResponse:
    """Users in a room on every worker (at most ``presence_list_limit``)."""
    caller = await identify(chat, request)
    await refuse_body(request)
    await _readable_room(chat, caller, room)
    info = await chat.presence(room)
    if not info.count and not _known(chat, room):
        raise ApiError(404, "not_found", f"no room {room!r}")
    return json({"room": room, "users": info.users, "count": info.count})


async def publish(
    chat: Chat,
    limiter: PublishLimiter,
    request: Request,
    room: str,
) -> HTTPResponse:
    """Publish a message as the system (or a named sender).

    Needs the system permission, checked before the body is read. The
    body: ``Content-Type: application/json`` (else 415), at most 64 KiB
    (413; more only when ``CHAT_MAX_TEXT_LENGTH`` needs it). Same path
    as a socket's message: an id, history, every member on every
    worker. 201 with the id.
    """
    caller = await identify(chat, request)
    _require_system(caller)
    _valid_room(room)
    text, sender, meta = await _message_body(chat, request)
    key = caller.user.id if caller.user is not None else "api-key"
    if not limiter.allow(key):
        chat.metrics.rate_limited += 1
        raise ApiError(429, "rate_limited", "too many messages, slow down")
    with _refusals():
        message_id = await chat.publish(room, text, user=sender, meta=meta)
    return json({"id": message_id, "room": room}, status=201)


async def direct_message(
    chat: Chat,
    limiter: PublishLimiter,
    request: Request,
    user_id: str,
) -> HTTPResponse:
    """Send a direct message to a user as the system (or a named sender).

    Needs the system permission; the body is a :class:`PublishBody`,
    read and checked as for publishing into a room (``meta`` too), and
    ``before_publish`` runs on it (403 with its reason if it refuses).
    Stored in the recipient's inbox (and the sender's), delivered to
    every connection of the recipient on every worker; an offline
    recipient finds it in their inbox's history. 201 with the id in the
    recipient's inbox and the inbox's name.
    """
    caller = await identify(chat, request)
    _require_system(caller)
    try:
        check_user_id(user_id, "user_id")
    except ProtocolError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    text, sender, meta = await _message_body(chat, request)
    key = caller.user.id if caller.user is not None else "api-key"
    if not limiter.allow(key):
        chat.metrics.rate_limited += 1
        raise ApiError(429, "rate_limited", "too many messages, slow down")
    with _refusals():
        message_id = await chat.send_to_user(
            user_id, text, user=sender, meta=meta
        )
    return json({"id": message_id, "room": inbox_name(user_id)}, status=201)


async def room_receipts(
    chat: Chat, request: Request, room: str
) -> HTTPResponse:
    """Read receipts of a room: the last id each present user has read.

    Readable by whoever may join the room; users are those present on
    every worker (at most ``presence_list_limit``). 400 when the backend
    keeps no read receipts.
    """
    caller = await identify(chat, request)
    await refuse_body(request)
    await _readable_room(chat, caller, room)
    try:
        frame = await chat.hub.marks.frame(room, "")
    except ProtocolError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    marks = jsonlib.loads(frame)["read"]
    return json({"room": room, "read": marks})


async def _message_body(
    chat: Chat, request: Request
) -> tuple[str, User, dict[str, Any] | None]:
    """Read a :class:`PublishBody`: the text, the sender and the meta."""
    body = await read_json(
        request, PublishBody, publish_body_limit(chat.config)
    )
    text = _checked(check_text, body.text, chat.config.max_text_length)
    _checked(check_meta, body.meta)
    return text, _sender(body.user), body.meta


async def edit_message(
    chat: Chat,
    limiter: PublishLimiter,
    request: Request,
    room: str,
    message_id: str,
) -> HTTPResponse:
    """Replace a message's text, as a moderator (system permission).

    Any message still in the room's history; the ``before_publish``
    hook runs on the new text (403 with its reason if it refuses).
    Members get ``edited``; history and recovery show the new text.
    Body as for publishing, with ``text`` and an optional ``user`` (the
    editor shown). 404 when the id is not in history or was deleted.
    """
    caller = await identify(chat, request)
    _require_system(caller)
    _valid_room(room)
    body = await read_json(request, EditBody, publish_body_limit(chat.config))
    text = _checked(check_text, body.text, chat.config.max_text_length)
    editor = _sender(body.user)
    key = caller.user.id if caller.user is not None else "api-key"
    if not limiter.allow(key):
        chat.metrics.rate_limited += 1
        raise ApiError(429, "rate_limited", "too many messages, slow down")
    with _refusals():
        await chat.edit(room, message_id, text, user=editor)
    return json({"id": message_id, "room": room})


async def delete_message(
    chat: Chat, request: Request, room: str, message_id: str
) -> HTTPResponse:
    """Delete a message, as a moderator (system permission).

    Members get ``deleted``; history and recovery show a tombstone
    without its text. 404 when the id is not in history or was deleted
    already.
    """
    caller = await identify(chat, request)
    _require_system(caller)
    await refuse_body(request)
    _valid_room(room)
    with _refusals():
        await chat.delete(room, message_id)
    return json({"id": message_id, "room": room})


_T = TypeVar("_T")


def _checked(check: Callable[..., _T], value: object, *args: int) -> _T:
    """``check(value, ...)``; a refusal as 413, or 400 naming the field."""
    try:
        return check(value, *args)
    except ProtocolError as exc:
        if exc.code == "too_large":
            raise ApiError(413, exc.code, exc.message) from None
        field = "meta" if check is check_meta else "text"
        raise ApiError(
            400,
            "bad_request",
            "invalid request",
            [{"field": field, "message": exc.message}],
        ) from None


def _sender(sender: Sender | None) -> User:
    if sender is None:
        return SYSTEM_USER
    if not valid_display_name(sender.name):
        raise ApiError(
            400,
            "bad_request",
            "invalid request",
            [{"field": "user.name", "message": NAME_RULE}],
        )
    return User(sender.id, sender.name)


@contextmanager
def _refusals() -> Iterator[None]:
    """The chat's refusals of a message as API errors.

    ``before_publish`` refusing (403 with its reason) or returning an
    invalid text (400), an unknown message id (404).
    """
    try:
        yield
    except Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc) or "refused") from None
    except LookupError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


async def disconnect_user(
    chat: Chat, request: Request, user_id: str
) -> HTTPResponse:
    """Close every connection of a user, on every worker (1008).

    Answers with the number closed on the worker that took the request;
    the other workers close theirs when the notice reaches them.
    """
    caller = await identify(chat, request)
    _require_system(caller)
    await refuse_body(request)
    closed = await chat.disconnect_user(user_id)
    return json({"user": user_id, "closed_here": closed})


async def health(chat: Chat, request: Request) -> HTTPResponse:
    """Liveness and readiness of the worker that answers.

    200 when this worker can reach its broadcaster and is not shutting
    down, 503 otherwise; no authentication, for load balancers.
    """
    await refuse_body(request)
    ready = chat.healthy
    return json(
        {
            "live": True,
            "ready": ready,
            "broadcaster": "ok" if chat.broadcaster.healthy else "down",
            "closing": chat.closing,
            "overloaded": chat.hub.unsent.full,
            "connections": chat.connection_count,
        },
        status=200 if ready else 503,
    )


def _known(chat: Chat, room: str) -> bool:
    return room in chat.hub.rooms


__all__ = [
    "ApiError",
    "EditBody",
    "HistoryQuery",
    "PublishBody",
    "Sender",
    "delete_message",
    "direct_message",
    "disconnect_user",
    "edit_message",
    "error_response",
    "health",
    "identify",
    "list_rooms",
    "publish",
    "publish_body_limit",
    "read_json",
    "read_query",
    "refuse_body",
    "room_history",
    "room_presence",
    "room_receipts",
]
