"""Registration of the HTTP API's routes on the chat blueprint.

The handlers are in :mod:`sanic_chat.api`; this module binds them to the
blueprint's chat, describes them for OpenAPI (only where the app uses
sanic-ext, see :mod:`sanic_chat._openapi`), and makes
:class:`~sanic_chat.Chat` injectable into the app's own handlers when the
app uses sanic-ext.
"""

from __future__ import annotations

import logging
from typing import Any

from sanic import Blueprint, HTTPResponse, Request, Sanic
from sanic.exceptions import SanicException

from . import _openapi, api
from ._openapi import describe
from .chat import Chat, get_chat
from .errors import BroadcasterUnavailable
from .limits import PublishLimiter

logger = logging.getLogger(__name__)

_ERRORS: dict[int, str] = {
    400: "Invalid request; `error.fields` names each invalid field",
    401: "No valid identity (token or API key)",
    403: "Not allowed",
    404: "No such room, or the message id is no longer in history",
    413: "Body or text too large",
    415: "Body not sent as application/json",
    429: "Rate limited",
    503: "Chat backend unavailable on this worker",
}


def _answers(ok: int, what: str, *errors: int) -> dict[int, str]:
    return {ok: what, **{code: _ERRORS[code] for code in errors}}


def add_api_routes(bp: Blueprint, api_path: str) -> None:
    """Add the HTTP API under ``api_path`` to the chat blueprint ``bp``."""
    prefix = api_path.rstrip("/")
    name = bp.name
    # Per app (one blueprint may serve several): publishers and readers.
    publishers: dict[int, PublishLimiter] = {}
    readers: dict[int, PublishLimiter] = {}

    def chat_of(request: Request) -> Chat:
        return get_chat(request.app, name)

    def limiter_of(
        chat: Chat, limiters: dict[int, PublishLimiter]
    ) -> PublishLimiter:
        limiter = limiters.get(id(chat))
        if limiter is None:
            config = chat.config
            limiter = PublishLimiter(config.rate_limit, config.rate_burst)
            limiters[id(chat)] = limiter
        return limiter

    async def rooms(request: Request) -> HTTPResponse:
        return await api.list_rooms(chat_of(request), request)

    async def history(request: Request, room: str) -> None:
        chat = chat_of(request)
        await api.room_history(chat, limiter_of(chat, readers), request, room)

    async def presence(request: Request, room: str) -> HTTPResponse:
        return await api.room_presence(chat_of(request), request, room)

    async def publish(request: Request, room: str) -> HTTPResponse:
        # A streaming route: Sanic leaves the body unread, api.publish
        # authenticates, then reads and validates it (api.read_json).
        chat = chat_of(request)
        limiter = limiter_of(chat, publishers)
        return await api.publish(chat, limiter, request, room)

    async def direct(request: Request, user_id: str) -> HTTPResponse:
        chat = chat_of(request)
        limiter = limiter_of(chat, publishers)
        return await api.direct_message(chat, limiter, request, user_id)

    async def receipts(request: Request, room: str) -> HTTPResponse:
        return await api.room_receipts(chat_of(request), request, room)

    async def disconnect(request: Request, user_id: str) -> HTTPResponse:
        return await api.disconnect_user(chat_of(request), request, user_id)

    async def health(request: Request) -> HTTPResponse:
        return await api.health(chat_of(request), request)

    async def on_error(request: Request, exc: Exception) -> HTTPResponse:
        return api.error_response(exc)

    rooms = describe(
        rooms,
        summary="List rooms",
        description=api.list_rooms.__doc__,
        answers=_answers(200, "Rooms and member counts", 401, 403),
    )
    history = describe(
        history,
        summary="Read a room's history",
        description=api.room_history.__doc__,
        query=[("limit", int), ("before", str), ("after", str),
               ("token", str), ("name", str)],
        answers=_answers(
            200, "Messages, oldest first", 400, 401, 403, 404, 429, 503
        ),
    )  # fmt: skip
    presence = describe(
        presence,
        summary="Who is in a room",
        description=api.room_presence.__doc__,
        answers=_answers(200, "Users and count", 400, 401, 403, 404),
    )
    publish = describe(
        publish,
        summary="Publish a message (system permission)",
        description=api.publish.__doc__,
        body=api.PublishBody,
        secured=True,
        answers=_answers(
            201, "The new message's id", 400, 401, 403, 413, 415, 429, 503
        ),
    )
    direct = describe(
        direct,
        summary="Send a direct message to a user (system permission)",
        description=api.direct_message.__doc__,
        body=api.PublishBody,
        secured=True,
        answers=_answers(
            201, "The new message's id", 400, 401, 403, 413, 415, 429, 503
        ),
    )
    receipts = describe(
        receipts,
        summary="Read receipts of a room",
        description=api.room_receipts.__doc__,
        answers=_answers(200, "Last read id by user id", 400, 401, 403, 503),
    )
    disconnect = describe(
        disconnect,
        summary="Disconnect a user (system permission)",
        description=api.disconnect_user.__doc__,
        secured=True,
        answers=_answers(200, "Connections closed here", 401, 403, 503),
    )
    health = describe(
        health,
        summary="Liveness and readiness of this worker",
        description=api.health.__doc__,
        answers=_answers(200, "Ready", 503),
    )

    routes = [
        (rooms, "/rooms", "GET", "api_rooms"),
        (history, "/rooms/<room:str>/history", "GET", "api_history"),
        (presence, "/rooms/<room:str>/presence", "GET", "api_presence"),
        (publish, "/rooms/<room:str>/messages", "POST", "api_publish"),
        (receipts, "/rooms/<room:str>/receipts", "GET", "api_receipts"),
        (direct, "/users/<user_id:str>/messages", "POST", "api_direct"),
        (disconnect, "/users/<user_id:str>/connections", "DELETE",
         "api_disconnect"),
        (health, "/health", "GET", "api_health"),
    ]  # fmt: skip
    for handler, path, method, route_name in routes:
        # Nothing is read before the caller is identified: Sanic would
        # buffer a body (up to REQUEST_MAX_SIZE, 100 MB) before the
        # handler runs. Publishing streams its body; the other routes
        # take none (Sanic discards one after the answer).
        streams = handler is publish or handler is direct
        bp.route(
            prefix + path,
            methods=[method],
            name=route_name,
            stream=streams,
            ignore_body=not streams,
        )(handler)
    bp.exception(api.ApiError, BroadcasterUnavailable, SanicException)(
        on_error
    )


def inject_chat(app: Sanic[Any, Any], name: str) -> None:
    """Let the app's handlers take ``chat: Chat``, if the app uses sanic-ext.

    Adds a ``before_server_start`` listener: by then Sanic has set up
    sanic-ext for the app if it is going to (``AUTO_EXTEND``, or the
    app's own ``Extend``), so ``app.ext`` creates nothing; it raises
    ``RuntimeError`` when the app has no sanic-ext, and then nothing is
    done. The listener also completes sanic-ext's OpenAPI document with
    the chat's tag and security scheme. It runs before sanic-ext's own
    (priority -1000), which seal the dependencies.
    """

    def constructor(request: Request) -> Chat:
        return get_chat(request.app, name)

    async def offer_chat_to_sanic_ext(app: Sanic[Any, Any]) -> None:
        try:
            ext = app.ext
        except RuntimeError:  # sanic-ext not installed, or AUTO_EXTEND off
            return
        try:
            ext.add_dependency(Chat, constructor)
        except SanicException:  # the app turned injection off
            logger.info("sanic-chat: no Chat injection (injection is off)")
        _openapi.complete(ext)

    app.before_server_start(offer_chat_to_sanic_ext)
