"""Registration of the HTTP API's routes on the chat blueprint.

The handlers are in :mod:`sanic_chat.api`; this module binds them to the
blueprint's chat, wraps them with sanic-ext's validation and OpenAPI
descriptions, and makes :class:`~sanic_chat.Chat` injectable into the
app's own handlers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import PydanticDeprecatedSince20
from sanic import Blueprint, HTTPResponse, Request, Sanic
from sanic.exceptions import SanicException
from sanic_ext import openapi, validate
from sanic_ext.exceptions import ValidationError

from . import api
from .chat import Chat, get_chat
from .errors import BroadcasterUnavailable
from .limits import PublishLimiter

_ERRORS: dict[int, str] = {
    400: "Invalid request; `error.fields` names each invalid field",
    401: "No valid identity (token or API key)",
    403: "Not allowed",
    413: "Body or text too large",
    415: "Body not sent as application/json",
    503: "Chat backend unavailable on this worker",
}


def _answers(ok: int, what: str, *errors: int) -> list[Any]:
    codes = {ok: what, **{code: _ERRORS.get(code, "") for code in errors}}
    return [
        openapi.definitions.Response(
            {"application/json": dict}, status=code, description=text
        )
        for code, text in codes.items()
    ]


@contextmanager
def _quiet_pydantic_v1_schema() -> Iterator[None]:
    """Hide sanic-ext 24.12's call of pydantic's deprecated ``schema()``.

    sanic-ext before 25.12 describes a model body with ``Model.schema()``,
    which warns ``PydanticDeprecatedSince20`` at every registration. The
    filter only lives while our decorator runs; the host's own filters
    are left as they were (raising the floor to sanic-ext 25.12 would
    force Sanic 25.12 and drop the 24.12 LTS).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            "The `schema` method is deprecated",
            category=PydanticDeprecatedSince20,
        )
        yield


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

    @openapi.definition(
        summary="List rooms",
        description=api.list_rooms.__doc__,
        tag=api.TAG,
        response=_answers(200, "Rooms and member counts", 401, 403),
    )
    async def rooms(request: Request) -> HTTPResponse:
        return await api.list_rooms(chat_of(request), request)

    @openapi.definition(
        summary="Read a room's history",
        description=api.room_history.__doc__,
        tag=api.TAG,
        parameter=[
            openapi.definitions.Parameter("limit", int, "query"),
            openapi.definitions.Parameter("before", str, "query"),
            openapi.definitions.Parameter("after", str, "query"),
            openapi.definitions.Parameter("token", str, "query"),
        ],
        response=_answers(
            200, "Messages, oldest first", 400, 401, 403, 404, 429, 503
        ),
    )
    @validate(query=api.HistoryQuery)
    async def history(
        request: Request, room: str, query: api.HistoryQuery
    ) -> None:
        chat = chat_of(request)
        await api.room_history(
            chat, limiter_of(chat, readers), request, room, query
        )

    @openapi.definition(
        summary="Who is in a room",
        description=api.room_presence.__doc__,
        tag=api.TAG,
        response=_answers(200, "Users and count", 400, 401, 403, 404),
    )
    async def presence(request: Request, room: str) -> HTTPResponse:
        return await api.room_presence(chat_of(request), request, room)

    async def publish(request: Request, room: str) -> HTTPResponse:
        # A streaming route: Sanic leaves the body unread, api.publish
        # authenticates, then reads and validates it (api.read_json).
        chat = chat_of(request)
        limiter = limiter_of(chat, publishers)
        return await api.publish(chat, limiter, request, room)

    with _quiet_pydantic_v1_schema():
        publish = openapi.definition(
            summary="Publish a message (system permission)",
            description=api.publish.__doc__,
            tag=api.TAG,
            body={"application/json": api.PublishBody},
            secured={"apiKey": []},
            response=_answers(
                201, "The new message's id", 400, 401, 403, 413, 415, 429, 503
            ),
        )(publish)

    @openapi.definition(
        summary="Disconnect a user (system permission)",
        description=api.disconnect_user.__doc__,
        tag=api.TAG,
        secured={"apiKey": []},
        response=_answers(200, "Connections closed here", 401, 403, 503),
    )
    async def disconnect(request: Request, user_id: str) -> HTTPResponse:
        return await api.disconnect_user(chat_of(request), request, user_id)

    @openapi.definition(
        summary="Liveness and readiness of this worker",
        description=api.health.__doc__,
        tag=api.TAG,
        response=_answers(200, "Ready", 503),
    )
    async def health(request: Request) -> HTTPResponse:
        return await api.health(chat_of(request), request)

    async def on_error(request: Request, exc: Exception) -> HTTPResponse:
        return api.error_response(exc)

    routes = [
        (rooms, "/rooms", "GET", "api_rooms"),
        (history, "/rooms/<room:str>/history", "GET", "api_history"),
        (presence, "/rooms/<room:str>/presence", "GET", "api_presence"),
        (publish, "/rooms/<room:str>/messages", "POST", "api_publish"),
        (disconnect, "/users/<user_id:str>/connections", "DELETE",
         "api_disconnect"),
        (health, "/health", "GET", "api_health"),
    ]  # fmt: skip
    for handler, path, method, route_name in routes:
        # Nothing is read before the caller is identified: Sanic would
        # buffer a body (up to REQUEST_MAX_SIZE, 100 MB) before the
        # handler runs. Publishing streams its body; the other routes
        # take none (Sanic discards one after the answer).
        streams = handler is publish
        bp.route(
            prefix + path,
            methods=[method],
            name=route_name,
            stream=streams,
            ignore_body=not streams,
        )(handler)
    bp.exception(
        api.ApiError, ValidationError, BroadcasterUnavailable, SanicException
    )(on_error)


def inject_chat(app: Sanic[Any, Any], name: str) -> None:
    """Let the app's handlers take a ``chat: Chat`` argument (sanic-ext)."""

    def constructor(request: Request) -> Chat:
        return get_chat(request.app, name)

    app.ext.add_dependency(Chat, constructor)
