"""``create_blueprint()``: the one module using Sanic's registration API.

Settings are resolved when the blueprint is registered on an app, from
the keyword arguments given here, then ``app.config.CHAT_*``, then the
defaults. Each app gets its own :class:`~sanic_chat.chat.Chat`, stored
on ``app.ctx.sanic_chat`` and found with :func:`~sanic_chat.get_chat`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Unpack

from sanic import Blueprint, HTTPResponse, Request, Sanic

from . import _sanic, asyncapi, lifecycle
from ._openapi import describe
from .api import ApiError, refuse_body
from .archive import MessageHook
from .assets import Asset
from .auth import refuse
from .backends import Broadcaster, MemoryBroadcaster, broadcaster_from_url
from .chat import DEFAULT_NAME, Chat, get_chat
from .config import ChatConfig, ChatOptions
from .endpoint import handler
from .errors import ConfigError
from .hooks import BeforePublish, Hooks, MessageCheck, RoomCheck
from .identity import Authenticator, GuestAuthenticator
from .jsclient import add_client_routes
from .metrics import may_scrape
from .redaction import install as install_log_redaction
from .routes import add_api_routes, inject_chat

logger = logging.getLogger(__name__)

WS_ROUTE = "ws"


class ChatBlueprint(Blueprint):
    """A Sanic blueprint that serves the chat; see :func:`create_blueprint`."""

    __slots__ = (
        "_asyncapi",
        "_authenticator",
        "_broadcaster",
        "_chat_options",
        "_documents",
        "_hooks",
        "_metrics",
        "_path",
        "_serve",
    )

    def __init__(
        self,
        name: str,
        options: dict[str, Any] | ChatConfig,
        broadcaster: Broadcaster | None,
        authenticator: Authenticator | None,
        hooks: dict[str, Any],
    ) -> None:
        super().__init__(name)
        # Keywords, resolved over app.config at registration; or settings
        # given whole, which app.config does not change.
        self._chat_options = options
        self._broadcaster = broadcaster
        self._authenticator = authenticator
        self._hooks = hooks
        self._path: str | None = None
        # Each app's AsyncAPI document, built when the blueprint is
        # registered on it (its url_prefix and settings are known then).
        self._documents: dict[str, Asset] = {}

        # Plain functions, not bound methods: Sanic's lazy blueprint
        # decorators only take functions directly.
        async def start(app: Sanic[Any, Any]) -> None:
            chat = self._chat(app)
            # Once per worker: the fast transport only if Sanic's internals
            # it needs are all there (and not under an ASGI server).
            chat.transport = _sanic.select_transport(
                app, chat.config.transport
            )
            chat.signals = _sanic.websocket_signals(app)
            await lifecycle.start(chat)

        async def shutdown(app: Sanic[Any, Any]) -> None:
            await lifecycle.shutdown(self._chat(app))

        async def stop(app: Sanic[Any, Any]) -> None:
            await lifecycle.stop(self._chat(app))

        def share_metrics(app: Sanic[Any, Any]) -> None:
            # prometheus-client aggregates workers through files in this
            # directory; it must be set before the workers start.
            if app.state.workers > 1 and not os.environ.get(
                "PROMETHEUS_MULTIPROC_DIR"
            ):
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
                    prefix="sanic-chat-metrics-"
                )

        async def metrics(request: Request) -> HTTPResponse:
            chat = self._chat(request.app)
            if not may_scrape(request.headers, chat.config.metrics_key):
                chat.metrics.auth_failure("invalid_metrics_key")
                refused = refuse(401, "unauthorized", "metrics need a key")
                refused.headers["WWW-Authenticate"] = "Bearer"
                return refused
            try:
                await refuse_body(request)
            except ApiError as exc:
                return exc.response()
            exporter = chat.exporter
            if exporter is None:
                return refuse(
                    503, "unavailable", "metrics need prometheus-client"
                )
            body, content_type = exporter.render()
            return HTTPResponse(body, content_type=content_type)

        self._metrics = metrics

        async def protocol_document(request: Request) -> HTTPResponse:
            return await self._documents[request.app.name].answer(request)

        self._asyncapi = describe(
            protocol_document,
            summary="The chat protocol as an AsyncAPI 3.0 document",
            description="JSON Schemas of every frame of the WebSocket "
            "protocol (docs/protocol.md); ETag, 304 on If-None-Match.",
        )

        def warn_if_not_shared(app: Sanic[Any, Any]) -> None:
            chat = self._chat(app)
            if app.state.workers > 1 and isinstance(
                chat.broadcaster, MemoryBroadcaster
            ):
                logger.warning(
                    "sanic-chat: %d workers on the in-memory broadcaster: "
                    "rooms are NOT shared between workers; use the Redis "
                    "broadcaster (CHAT_BROADCASTER_URL=redis://...)",
                    app.state.workers,
                )

        serve_chat = handler(self._chat)
        # Sanic's marker for handlers that answer by upgrading: no
        # "handler produced no response" error when it returns None.
        _sanic.upgrade_handler(serve_chat)
        self._serve = describe(
            serve_chat,
            summary="The chat WebSocket",
            description="Upgrade to a WebSocket speaking the chat protocol "
            "(docs/protocol.md). Query: `room` (repeatable, `NAME` or "
            "`NAME@LAST_ID`), `token`, `name` (guests). 101, or 400, 401, "
            "403, 405, 426, 429 before any socket exists.",
        )

        self.main_process_start(warn_if_not_shared)
        self.main_process_start(share_metrics)
        self.before_server_start(start)
        self.before_server_stop(shutdown)
        self.after_server_stop(stop)

    def register(self, app: Sanic[Any, Any], options: dict[str, Any]) -> None:
        """Resolve settings for ``app``, create its chat, add the routes.

        Also adds, once per process, the filter that keeps ``token``
        query values out of Sanic's log lines (:mod:`sanic_chat.
        redaction`): the only change to the host's logging.
        """
        install_log_redaction()
        if isinstance(self._chat_options, ChatConfig):
            config = self._chat_options
            _warn_unread(app)
        else:
            config = ChatConfig.resolve(self._chat_options, app.config)
        chats: dict[str, Chat] = getattr(app.ctx, "sanic_chat", None) or {}
        if self.name in chats:
            raise ConfigError(
                f"a sanic-chat blueprint named {self.name!r} is already "
                f"registered on app {app.name!r}"
            )
        broadcaster = self._broadcaster or broadcaster_from_url(
            config.broadcaster_url, history_size=config.history_size
        )
        chats[self.name] = Chat(
            config,
            broadcaster,
            self._authenticator or GuestAuthenticator(),
            hooks=Hooks(
                config.max_text_length,
                can_join=self._hooks["can_join"],
                can_publish=self._hooks["can_publish"],
                can_message=self._hooks["can_message"],
                can_moderate=self._hooks["can_moderate"],
                before_publish=self._hooks["before_publish"],
            ),
            on_message=self._hooks["on_message"],
        )
        app.ctx.sanic_chat = chats
        # Only where the app uses sanic-ext: see routes.inject_chat.
        inject_chat(app, self.name)
        # A plain GET route: the handler upgrades the connection itself
        # (see sanic_chat._sanic). Sanic must still use its
        # websocket-capable protocol for each app's connections.
        app.enable_websocket()
        if self._path is None:
            self._path = config.path
            # ignore_body: an upgrade has no body (transport.accept refuses
            # one); Sanic must not buffer it before the checks run.
            self.route(
                config.path, methods=["GET"], name=WS_ROUTE, ignore_body=True
            )(self._serve)
            if config.http_api:
                add_api_routes(self, config.api_path)
            if config.asyncapi_path:
                self.route(
                    config.asyncapi_path,
                    methods=["GET", "HEAD"],
                    name="asyncapi",
                    ignore_body=True,
                )(self._asyncapi)
            if config.metrics_path:
                self.route(
                    config.metrics_path,
                    methods=["GET"],
                    name="metrics",
                    ignore_body=True,
                )(
                    describe(
                        self._metrics,
                        summary="Prometheus metrics of the chat",
                        description="Text exposition; every name starts "
                        "with sanic_chat_ (docs/metrics.md).",
                    )
                )
            if config.client_path:
                add_client_routes(self, config.client_path)
        elif self._path != config.path:
            raise ConfigError(
                "one blueprint cannot serve different paths on different "
                "apps; create one blueprint per app instead"
            )
        if "url_prefix" not in options and config.url_prefix:
            options = {**options, "url_prefix": config.url_prefix}
        if config.asyncapi_path:
            self._documents[app.name] = asyncapi.published(
                asyncapi.document(config, options.get("url_prefix") or "")
            )
        super().register(app, options)  # type: ignore[no-untyped-call]

    def _chat(self, app: Sanic[Any, Any]) -> Chat:
        return get_chat(app, self.name)


def _warn_unread(app: Sanic[Any, Any]) -> None:
    """Say which ``CHAT_*`` keys a blueprint given a ChatConfig ignores."""
    unread = sorted(
        key
        for key in app.config
        if key.startswith("CHAT_")
        and key[5:].lower() in ChatConfig.option_names()
    )
    if unread:
        logger.warning(
            "sanic-chat: settings given as a ChatConfig; app.config %s "
            "(or SANIC_ variables) not read",
            ", ".join(unread),
        )


def create_blueprint(
    config: ChatConfig | None = None,
    /,
    *,
    broadcaster: Broadcaster | str | None = None,
    authenticator: Authenticator | None = None,
    can_join: RoomCheck | None = None,
    can_publish: RoomCheck | None = None,
    can_message: MessageCheck | None = None,
    can_moderate: RoomCheck | None = None,
    before_publish: BeforePublish | None = None,
    on_message: MessageHook | None = None,
    name: str = DEFAULT_NAME,
    **options: Unpack[ChatOptions],
) -> Blueprint:
    """Create the chat blueprint: ``app.blueprint(create_blueprint())``.

    Settings come as keywords (checked by mypy and IDEs, see
    :class:`~sanic_chat.config.ChatOptions`), as a whole
    :class:`~sanic_chat.config.ChatConfig`, or both::

        create_blueprint(
            default_room="general", allowed_origins=["https://a.example"]
        )
        create_blueprint(ChatConfig(history_size=500), url_prefix="/chat")

    Keywords are merged over ``app.config.CHAT_*`` and the defaults when
    the blueprint is registered. A ``ChatConfig`` is complete settings:
    with one, ``app.config.CHAT_*`` keys are not read (a warning names
    those present), keywords given with it replace its fields, and it is
    validated here, at once.

    Args:
        config: Settings given whole, instead of ``app.config`` and the
            defaults.
        broadcaster: A :class:`~sanic_chat.backends.Broadcaster` instance,
            or a URL such as ``"memory://"``. Default: ``CHAT_BROADCASTER_URL``
            or ``memory://``. An instance is used as is: give each app its
            own.
        authenticator: Identifies users before the upgrade (see
            :mod:`sanic_chat.authenticators`). Default: every connection is
            a guest with a server-generated id.
        can_join: ``(user, room) -> bool`` (sync or async), asked for every
            room a connection joins, at connect or with ``join``.
        can_publish: ``(user, room) -> bool``, asked for every message
            and edit.
        can_message: ``(sender, recipient_id) -> bool`` (sync or async),
            asked for every direct message and DM ``typing``: block
            lists. A refusal is the error ``forbidden``.
        can_moderate: ``(user, room) -> bool`` (sync or async), asked
            when a user edits or deletes a message of someone else: true
            lets them. Without it only authors change their messages.
        before_publish: ``(user, room, text, meta) -> str | None`` (sync
            or async), run before every message, direct message (its
            ``room`` is the recipient's inbox) and edit is stored, from
            sockets, :meth:`Chat.publish <sanic_chat.Chat.publish>`,
            :meth:`Chat.send_to_user <sanic_chat.Chat.send_to_user>` and
            the HTTP API: return the text to store (possibly changed),
            ``None`` to keep it, or raise :class:`~sanic_chat.Forbidden`
            with a reason to refuse it (error ``forbidden``).
        on_message: ``(event) -> None`` (sync or async), given a
            :class:`~sanic_chat.MessageEvent` for every message, edit and
            delete stored through this worker, from a bounded queue off
            the delivery path (:mod:`sanic_chat.archive`).
        name: Blueprint name; also the name :func:`get_chat` looks up.
        **options: Any :class:`~sanic_chat.config.ChatConfig` field, e.g.
            ``default_room="general"`` or ``url_prefix="/chat"``, typed as
            in :class:`~sanic_chat.config.ChatOptions`. Each can also be
            set as ``app.config.CHAT_<NAME>``; keywords win.

    Raises:
        ConfigError: An unknown option (at once) or an invalid value (at
            once with ``config``, else when the blueprint is registered).
    """
    given: dict[str, Any] = dict(options)
    if isinstance(broadcaster, str):
        given["broadcaster_url"] = broadcaster
        broadcaster = None
    unknown = set(given) - set(ChatConfig.option_names())
    if unknown:
        raise ConfigError(
            f"unknown sanic-chat option(s): {', '.join(sorted(unknown))}"
        )
    if config is not None and not isinstance(config, ChatConfig):
        raise ConfigError(
            "create_blueprint() takes a ChatConfig or keyword options, "
            f"not {type(config).__name__}"
        )
    return ChatBlueprint(
        name,
        given
        if config is None
        else ChatConfig.resolve(given, {}, base=config),
        broadcaster,
        authenticator,
        {
            "can_join": can_join,
            "can_publish": can_publish,
            "can_message": can_message,
            "can_moderate": can_moderate,
            "before_publish": before_publish,
            "on_message": on_message,
        },
    )
