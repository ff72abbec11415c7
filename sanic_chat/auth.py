"""Pre-upgrade checks: origin, identity and rooms.

This runs first thing in the ``/ws`` handler (:func:`sanic_chat.endpoint.
serve`), before the WebSocket handshake, so a refused client gets a
plain HTTP answer with a JSON body (400, 401, 403, 426 or 429) and never
a socket.

Every 401, here and on the HTTP API, is logged once at INFO on the
``sanic_chat.auth`` logger with its reason, the route and the peer's
address, never the token; so is a token refused on the way to a guest
identity (``allow_anonymous``).

What an authenticator raises reaches the client only when it is one of
the errors meant for it (:class:`~sanic_chat.errors.Unauthorized`,
:class:`~sanic_chat.errors.Forbidden`,
:class:`~sanic_chat.errors.BadCredentials`, or Sanic's own HTTP errors).
Anything else is logged once here, with its traceback, and answered
with a fixed message: 400 for a ``ValueError`` (the status it always
had), 500 for the rest (:class:`AuthenticatorFailed`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sanic import HTTPResponse, Request
from sanic.exceptions import SanicException
from sanic.response import json

from .chat import Chat
from .errors import (
    BadCredentials,
    ChatError,
    Forbidden,
    ProtocolError,
    Unauthorized,
)
from .identity import GuestAuthenticator, User
from .protocol import MAX_ID_LENGTH, ROOM_ERROR, Join, check_id, check_room
from .query import query_values

logger = logging.getLogger(__name__)

BAD_CREDENTIALS = "credentials not accepted"
"""The 400 message for a ``ValueError`` that is not ``BadCredentials``."""


class AuthenticatorFailed(Exception):
    """An authenticator raised an unexpected error: answered 500.

    Raised by :func:`authenticate` in place of the authenticator's own
    exception (logged once there), so no text of it reaches the client.
    """


def refuse(
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, str]] | None = None,
    *,
    reason: str | None = None,
) -> HTTPResponse:
    """Build the JSON error answer shared by the upgrade and the HTTP API.

    ``{"error": {"code": ..., "reason": ..., "message": ..., "fields":
    [...]}}``, with ``reason`` (401: why, see
    :data:`~sanic_chat.errors.UNAUTHORIZED_REASONS`) and ``fields`` only
    when given.
    """
    error: dict[str, Any] = {"code": code}
    if reason is not None:
        error["reason"] = reason
    error["message"] = message
    if fields is not None:
        error["fields"] = fields
    return json({"error": error}, status=status)


async def authenticate(chat: Chat, request: Request) -> User:
    """Identify the caller of an upgrade or HTTP API request.

    Without a valid identity the caller is a guest if ``allow_anonymous``
    is set, else refused. Either way a refused token is logged once (see
    :func:`log_unauthorized`); a guest who sent no token is not.

    Raises:
        Unauthorized: No valid identity and no guests: answer 401 with
            its ``reason``.
        Forbidden: The authenticator refuses the identity (403).
        BadCredentials: Credentials the authenticator cannot read, or a
            guest's proposed name is invalid (400 with its message); also
            any other ``ValueError`` of the authenticator, with
            :data:`BAD_CREDENTIALS` as message.
        AuthenticatorFailed: The authenticator raised anything else (500).
    """
    try:
        return await chat.authenticate(request)
    except Unauthorized as exc:
        guest = chat.config.allow_anonymous
        if not (guest and exc.reason == "missing"):
            log_unauthorized(request, exc.reason, guest=guest)
        if not guest:
            raise
    except (ChatError, SanicException):
        raise  # meant for the client (BroadcasterError: a 503 later)
    except ValueError:
        # Most likely input it could not parse: a warning, not an error.
        _log_failure(request, 400, logging.WARNING)
        raise BadCredentials(BAD_CREDENTIALS) from None
    except Exception:
        _log_failure(request, 500, logging.ERROR)
        raise AuthenticatorFailed from None
    return await GuestAuthenticator()(request)


def _log_failure(request: Request, status: int, level: int) -> None:
    # Once, with the traceback for the authenticator's author; the
    # request's token is not in it (only what the exception says).
    logger.log(
        level,
        "sanic-chat: the authenticator raised on %s %s from %s; answered "
        "%d without its message",
        request.method,
        request.path,
        request.client_ip or "unknown",
        status,
        exc_info=True,
    )


def log_unauthorized(
    request: Request, reason: str, *, guest: bool = False
) -> None:
    """Log a refused credential at INFO: reason, route and peer, no token.

    ``extra`` carries ``chat_reason`` and ``chat_peer`` for structured
    log handlers.
    """
    peer = request.client_ip or "unknown"
    logger.info(
        "sanic-chat: 401 %s for %s %s from %s%s",
        reason,
        request.method,
        request.path,
        peer,
        "; let in as a guest" if guest else "",
        extra={"chat_reason": reason, "chat_peer": peer},
    )


def origin_allowed(request: Request, allowed: Sequence[str]) -> bool:
    """Tell whether the request's ``Origin`` may open a socket.

    Clients that send no ``Origin`` (not browsers) are allowed; a browser
    origin must be the request's own host, or listed in ``allowed``
    (``scheme://host[:port]`` each, as :attr:`ChatConfig.allowed_origins
    <sanic_chat.config.ChatConfig.allowed_origins>` holds them), or
    ``allowed`` is ``("*",)``. An origin without a host (``null``) is
    never the request's own host. This is the defence against Cross-Site
    WebSocket Hijacking. A string is read as a comma separated list.
    """
    if isinstance(allowed, str):
        allowed = [o.strip() for o in allowed.split(",") if o.strip()]
    origin: str | None = request.headers.get("origin")
    if origin is None or tuple(allowed) == ("*",):
        return True
    if allowed:
        return origin.rstrip("/") in {o.rstrip("/") for o in allowed}
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # e.g. "http://[": not an origin at all
        return False
    host = request.host or ""
    # "null" (sandboxed frames, file: pages) and other origins without a
    # host are nobody's own host, not even a request with an empty Host.
    return bool(netloc) and bool(host) and netloc.lower() == host.lower()


async def check_upgrade(chat: Chat, request: Request) -> HTTPResponse | None:
    """Check origin, rooms and identity, or refuse the upgrade.

    On success, ``request.ctx.chat_user`` is the :class:`User` and
    ``request.ctx.chat_rooms`` the list of rooms to join
    (:class:`~sanic_chat.protocol.Join`, from ``?room=NAME`` or
    ``NAME@SINCE``). Every
    refusal is counted in the chat's metrics by its code.
    """

    def deny(
        status: int, code: str, message: str, reason: str | None = None
    ) -> HTTPResponse:
        chat.metrics.auth_failure(code)
        return refuse(status, code, message, reason=reason)

    if not request.headers.get("host", "").strip():
        # HTTP/1.1 requires it (RFC 9112 3.2), and the origin check
        # compares against it: without one, nothing can be checked.
        return deny(400, "bad_request", "a Host header is required")
    config = chat.config
    if request.headers.get("upgrade", "").lower() != "websocket":
        return deny(426, "upgrade_required", "this is a WebSocket endpoint")
    if chat.hub.unsent.full:
        # Clients that do not read hold too much of this worker's memory:
        # take no new work until they drain or are closed.
        busy = deny(503, "overloaded", "server busy, retry later")
        busy.headers["Retry-After"] = "5"
        return busy
    if not origin_allowed(request, config.allowed_origins):
        return deny(403, "forbidden_origin", "origin not allowed")
    rooms: list[Join] = []
    seen: set[str] = set()
    for value in query_values(request.query_string, "room"):
        name, sep, since = value.partition("@")
        try:
            check_room(name)
            if sep:  # "lobby@" names no id: refused like a bad one
                check_id(since or None, "since", MAX_ID_LENGTH)
        except ProtocolError:
            return deny(
                400,
                "bad_request",
                ROOM_ERROR + ", optionally followed by @ and a message id",
            )
        if name not in seen:
            seen.add(name)
            rooms.append(Join(name, since if sep else None))
    if len(rooms) > config.max_rooms_per_connection:
        return deny(
            400,
            "too_many_rooms",
            "a connection may be in at most "
            f"{config.max_rooms_per_connection} rooms",
        )
    try:
        user = await authenticate(chat, request)
    except Unauthorized as exc:
        return deny(401, "unauthorized", exc.message, exc.reason)
    except Forbidden as exc:
        return deny(403, "forbidden", str(exc) or "not allowed")
    except BadCredentials as exc:
        return deny(400, "bad_request", exc.message)
    except AuthenticatorFailed:
        return deny(500, "internal_error", "authentication failed")
    if chat.hub.connections_of(user.id) >= config.max_connections_per_user:
        return deny(
            429,
            "too_many_connections",
            f"at most {config.max_connections_per_user} connections per user",
        )
    chat.hub.reserve(user.id)  # counted from now: no burst can bypass it
    if not await chat.admission.admit():  # may wait: a busy worker
        chat.hub.release(user.id)
        busy = deny(503, "overloaded", "server busy, retry later")
        busy.headers["retry-after"] = str(chat.admission.retry_after)
        return busy
    request.ctx.chat_user = user
    request.ctx.chat_rooms = rooms or [Join(config.default_room)]
    return None
