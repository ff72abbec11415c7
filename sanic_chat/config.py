"""Settings of one chat blueprint, from keywords, app config and defaults.

Keyword arguments win over ``app.config`` keys, which win over defaults.

Every option ``foo_bar`` can also be set as ``app.config.CHAT_FOO_BAR``,
and so through the environment as ``SANIC_CHAT_FOO_BAR`` (Sanic loads
``SANIC_``-prefixed variables into ``app.config``). Values from the
environment arrive as strings (Sanic converts ``true``/``false`` and
numbers); :meth:`ChatConfig.resolve` converts and validates them. An
error starts with the setting as the user wrote it, so it says what to
change: ``SANIC_CHAT_HISTORY_SIZE=-5: history_size must be at least 1``
(the variable, when the value is the one Sanic loaded from the
environment), ``CHAT_SLOW_CONSUMER='bogus': ...`` (the app config key)
or ``slow_consumer='bogus': ...`` (the keyword). Secrets are not shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypedDict

from .errors import ConfigError

# Sanic's default prefix of the environment variables it loads into
# app.config (``SANIC_CHAT_HISTORY_SIZE`` becomes ``CHAT_HISTORY_SIZE``).
SANIC_PREFIX = "SANIC_"

# Always used with fullmatch: ``$`` in ``re.match`` also matches before a
# final newline, so "staff\n" would pass for "staff".
ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

SlowConsumerPolicy = Literal["close", "drop_oldest"]
RoomLabels = Literal["off", "hashed", "names"]
TransportChoice = Literal["auto", "fast", "portable"]


class ChatOptions(TypedDict, total=False):
    """The keyword options of :func:`~sanic_chat.create_blueprint`, typed.

    One key per :class:`ChatConfig` field, with the type a keyword may
    have, so that an IDE completes them and mypy checks them at the call
    site (``create_blueprint(**options: Unpack[ChatOptions])``): a
    misspelt name or a value of the wrong type is an error before the app
    runs. Every key means what the field of the same name means.

    ``allowed_origins`` takes a list (any sequence) of origins; a comma
    separated string is still accepted, as it comes from
    ``CHAT_ALLOWED_ORIGINS``.
    """

    broadcaster_url: str
    default_room: str
    path: str
    url_prefix: str
    history_size: int
    max_text_length: int
    send_queue_size: int
    slow_consumer: SlowConsumerPolicy
    max_rooms_per_connection: int
    presence_events: bool
    presence_events_max_members: int
    presence_list_limit: int
    shutdown_close_timeout: float
    shutdown_spread: float
    send_timeout: float
    max_unsent_bytes: int
    max_worker_unsent_bytes: int
    allowed_origins: str | Sequence[str]
    allow_anonymous: bool
    rate_limit: float
    rate_burst: int
    rate_limit_strikes: int
    churn_cost: int
    max_connections_per_user: int
    http_api: bool
    api_path: str
    api_key: str
    metrics_path: str
    metrics_key: str
    metrics_room_labels: RoomLabels
    client_path: str
    max_connections_in_setup: int
    setup_wait: float
    idempotency_window: float
    transport: TransportChoice


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Validated settings of one chat blueprint.

    Attributes:
        broadcaster_url: Backend to use when no broadcaster instance is
            given, as a URL (``memory://``).
        default_room: Room every connection joins when it names none.
        path: Route of the WebSocket endpoint inside the blueprint.
        url_prefix: Prefix of the blueprint's routes (e.g. ``/chat``).
        history_size: Messages kept per room for ``history`` and ``since``.
        max_text_length: Longest accepted message text, in characters.
        send_queue_size: Frames buffered per connection before the
            slow-consumer policy applies.
        slow_consumer: ``close`` (close 1013) or ``drop_oldest`` (drop the
            oldest frames and send a ``lagged`` notice).
        max_rooms_per_connection: Rooms one connection may be in at once.
        presence_events: Send ``joined``/``left`` of other members.
        presence_events_max_members: Above this many members on this
            worker, a room stops announcing joins and leaves, so that a
            connect storm does not flood everybody (``presence`` still
            answers).
        presence_list_limit: Most users listed in a ``presence`` reply.
        shutdown_close_timeout: Seconds to wait for sockets to close on
            shutdown (after the last batch).
        shutdown_spread: Seconds over which shutdown closes sockets, in
            random batches, so clients do not all reconnect at once.
        send_timeout: Seconds one frame may take to be written before the
            client is considered gone and closed with 1013 (a client that
            stopped reading altogether).
        max_unsent_bytes: Bytes one connection may have produced but not
            yet sent (its queues plus its socket's write buffer). Broadcast
            frames beyond it follow ``slow_consumer``; a reply beyond it
            closes the connection with 1013. The reader pauses at half of
            it, and a ``history`` reply is cut to a quarter of it.
        max_worker_unsent_bytes: Unsent bytes of every connection and HTTP
            response of a worker together; while they exceed it, new
            upgrades and HTTP history reads get 503.
        allowed_origins: Browser origins allowed to connect
            (``scheme://host[:port]``), trimmed of spaces (a final ``/``
            is ignored when they are compared); empty means the request's
            own host only; ``("*",)`` allows every origin (unsafe with
            cookie authentication). Given as a list, or as a comma
            separated string (``CHAT_ALLOWED_ORIGINS``).
        allow_anonymous: With an authenticator, let requests without a
            valid identity in as guests instead of answering 401.
        rate_limit: Frames per second a connection may send on average
            (token bucket); ``join`` and ``leave`` cost ``churn_cost``.
        rate_burst: Frames a connection may send at once (bucket size).
        rate_limit_strikes: ``rate_limited`` errors in a row (without a
            second of calm between them) before the connection is
            closed with 1008.
        churn_cost: Tokens a ``join`` or ``leave`` costs.
        max_connections_per_user: Sockets one user id may hold on a worker;
            more get 429 before the upgrade.
        http_api: Serve the HTTP API (rooms, history, presence,
            publishing, disconnecting users, health) under ``api_path``.
        api_path: Prefix of the HTTP API's routes, inside the blueprint.
        api_key: Secret that lets a backend publish as the system and
            disconnect users over the HTTP API (``X-API-Key`` header);
            empty: only users whose token has the ``chat_admin`` claim.
        metrics_path: Route of the Prometheus metrics (needs the
            ``prometheus-client`` package); empty: no route.
        metrics_key: Secret a scraper must send to read ``metrics_path``
            (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``),
            401 otherwise; empty: anyone who reaches the route may.
        metrics_room_labels: Per-room series in the metrics: ``off`` (only
            totals), ``hashed`` (a short HMAC-SHA256 of each room name,
            keyed by ``metrics_key`` or else ``api_key``; guessable from
            a list of likely names when neither is set) or ``names``.
        client_path: Route of the JavaScript client (``client.js``; its
            TypeScript declarations are served beside it, ``.js``
            replaced by ``.d.ts``); empty: no route.
        max_connections_in_setup: Connections a worker sets up at once
            (upgrade accepted, first rooms not joined yet); more wait
            before the upgrade (:mod:`sanic_chat.admission`).
        setup_wait: Seconds an upgrade may wait for a setup slot before
            it is refused with 503 and ``Retry-After``; 0: refuse at once.
        idempotency_window: Seconds a ``message``'s ``ref`` is
            remembered per user: a resend with the same ``ref`` within
            them is not published again, it gets the first one's ``ack``
            (:mod:`sanic_chat.hub.sent`); 0: refs are not remembered.
        transport: Which WebSocket transport serves ``/ws``: ``auto``
            (the fast one on Sanic's own server when its startup check
            passes, else the portable one), ``fast`` (fail at startup if
            it cannot run) or ``portable`` (Sanic's public websocket API,
            or ASGI; what ASGI servers always get).
    """

    # Not in repr: URLs and keys carry credentials.
    broadcaster_url: str = field(default="memory://", repr=False)
    default_room: str = "lobby"
    path: str = "/ws"
    url_prefix: str = ""
    history_size: int = 100
    max_text_length: int = 4000
    send_queue_size: int = 100
    slow_consumer: SlowConsumerPolicy = "close"
    max_rooms_per_connection: int = 50
    presence_events: bool = True
    presence_events_max_members: int = 100
    presence_list_limit: int = 1000
    shutdown_close_timeout: float = 5.0
    shutdown_spread: float = 1.0
    send_timeout: float = 30.0
    max_unsent_bytes: int = 1 << 20
    max_worker_unsent_bytes: int = 128 << 20
    allowed_origins: tuple[str, ...] = ()
    allow_anonymous: bool = False
    rate_limit: float = 10.0
    rate_burst: int = 20
    rate_limit_strikes: int = 20
    churn_cost: int = 5
    max_connections_per_user: int = 20
    http_api: bool = True
    api_path: str = "/api"
    api_key: str = field(default="", repr=False)
    metrics_path: str = "/metrics"
    metrics_key: str = field(default="", repr=False)
    metrics_room_labels: RoomLabels = "off"
    client_path: str = "/client.js"
    max_connections_in_setup: int = 128
    setup_wait: float = 5.0
    idempotency_window: float = 300.0
    # Which transport; see sanic_chat._sanic.
    transport: TransportChoice = "auto"

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Names of every option, as keyword arguments spell them."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def resolve(
        cls,
        options: Mapping[str, Any],
        app_config: Mapping[str, Any],
        *,
        base: ChatConfig | None = None,
    ) -> ChatConfig:
        """Merge keyword ``options`` over ``CHAT_*`` keys over defaults.

        Args:
            options: Keyword options (:class:`ChatOptions`).
            app_config: The app's config, whose ``CHAT_*`` keys are read.
            base: Settings given as a :class:`ChatConfig`: its fields that
                differ from the defaults count as given, under ``options``
                and over ``app_config``. They are converted and validated
                as keywords are.

        Raises:
            ConfigError: An unknown option, or a value of the wrong type or
                out of range. The message starts with the setting as the
                user wrote it: the keyword (``history_size=-5``), the
                config key (``CHAT_HISTORY_SIZE=-5``) or the environment
                variable (``SANIC_CHAT_HISTORY_SIZE=-5``), then says what
                is wrong.
        """
        unknown = set(options) - set(cls.option_names())
        if unknown:
            raise ConfigError(
                f"unknown sanic-chat option(s): {', '.join(sorted(unknown))}"
            )
        values: dict[str, Any] = {}
        given: dict[str, str] = {}
        for f in fields(cls):
            key = "CHAT_" + f.name.upper()
            if f.name in options:
                raw = options[f.name]
                given[f.name] = _shown(f.name, raw, f.repr)
            elif base is not None and getattr(base, f.name) != f.default:
                raw = getattr(base, f.name)
                given[f.name] = _shown(f.name, raw, f.repr)
            elif key in app_config:
                raw = app_config[key]
                env_key = SANIC_PREFIX + key
                text = os.environ.get(env_key)
                if text is not None and _loaded_from(text, raw):
                    given[f.name] = _shown(env_key, text, f.repr, quote=False)
                    if isinstance(f.default, str | tuple):
                        # Sanic made "007" the int 7: a key, a path, a
                        # room name or a list is the text as written.
                        raw = text
                else:
                    given[f.name] = _shown(key, raw, f.repr)
            else:
                continue
            values[f.name] = _convert(given[f.name], f.name, raw, f.default)
        config = cls(**values)
        _validate(config, given)
        return config


def _validate(config: ChatConfig, given: Mapping[str, str]) -> None:
    """Check the values of ``config`` together; ``given`` names them."""

    def fail(message: str, *names: str) -> ConfigError:
        where = ", ".join(given[n] for n in names if n in given)
        return ConfigError(f"{where}: {message}" if where else message)

    if config.rate_limit <= 0:
        raise fail("rate_limit must be > 0", "rate_limit")
    for name in (
        "rate_burst",
        "rate_limit_strikes",
        "churn_cost",
        "max_connections_per_user",
        "history_size",
        "max_text_length",
        "send_queue_size",
        "max_rooms_per_connection",
        "presence_list_limit",
        "max_connections_in_setup",
    ):
        if getattr(config, name) < 1:
            raise fail(f"{name} must be at least 1", name)
    for name in (
        "presence_events_max_members",
        "shutdown_spread",
        "shutdown_close_timeout",
        "setup_wait",
        "idempotency_window",
    ):
        if getattr(config, name) < 0:
            raise fail(f"{name} must be >= 0", name)
    if config.send_timeout <= 0:
        raise fail("send_timeout must be > 0", "send_timeout")
    if config.max_unsent_bytes < 65536:
        raise fail(
            "max_unsent_bytes must be at least 65536", "max_unsent_bytes"
        )
    if config.max_worker_unsent_bytes < config.max_unsent_bytes:
        raise fail(
            "max_worker_unsent_bytes "
            f"({config.max_worker_unsent_bytes}) must be at least "
            f"max_unsent_bytes ({config.max_unsent_bytes})",
            "max_worker_unsent_bytes",
            "max_unsent_bytes",
        )
    if config.slow_consumer not in ("close", "drop_oldest"):
        raise fail(
            "slow_consumer must be 'close' or 'drop_oldest'",
            "slow_consumer",
        )
    if config.transport not in ("auto", "fast", "portable"):
        raise ConfigError(
            "transport must be 'auto', 'fast' or 'portable', "
            f"not {config.transport!r}"
        )
    if config.metrics_room_labels not in ("off", "hashed", "names"):
        raise fail(
            "metrics_room_labels must be 'off', 'hashed' or 'names'",
            "metrics_room_labels",
        )
    if not ROOM_NAME_RE.fullmatch(config.default_room):
        raise fail(
            "default_room is not a valid room name "
            f"(^{ROOM_NAME_RE.pattern}$)",
            "default_room",
        )
    for name in ("path", "api_path"):
        if not getattr(config, name).startswith("/"):
            raise fail(f"{name} must start with '/'", name)
    if config.client_path and not config.client_path.startswith("/"):
        raise fail(
            "client_path must start with '/' (or be empty)", "client_path"
        )
    if config.http_api and config.api_path.rstrip("/") == config.path.rstrip(
        "/"
    ):
        raise fail(
            f"api_path and path must differ (both {config.path!r})",
            "api_path",
            "path",
        )


def _shown(key: str, raw: Any, visible: bool, *, quote: bool = True) -> str:
    """``KEY=value`` as the user set it; secrets (not in repr) hidden."""
    if not visible:
        return f"{key}=<hidden>"
    return f"{key}={raw!r}" if quote else f"{key}={raw}"


def _loaded_from(text: str, value: Any) -> bool:
    """Tell whether Sanic's loading of environment ``text`` gave ``value``.

    Sanic converts ``SANIC_`` variables with int, then float, then its
    true/false words, else keeps the string. Only values that fail
    validation are ever shown, and those are strings or numbers, so
    comparing as the value's own type is enough.
    """
    if isinstance(value, str):
        return value == text
    if isinstance(value, bool):
        return text.strip().lower() in (_TRUE if value else _FALSE)
    if isinstance(value, int | float):
        try:
            return type(value)(text) == value
        except ValueError:
            return False
    return False


# The words Sanic's str_to_bool reads as true and false.
_TRUE = frozenset(
    ["1", "true", "yes", "on", "y", "t", "yep", "yup", "enable", "enabled"]
)
_FALSE = frozenset(
    ["0", "false", "no", "off", "n", "f", "disable", "disabled"]
)


def _convert(where: str, name: str, raw: Any, default: Any) -> Any:
    """Coerce ``raw`` to the type of ``default``, naming ``where`` on error."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(raw, str):
                lowered = raw.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            if isinstance(raw, bool | int):
                return bool(raw)
            raise TypeError(raw)
        if kind is int:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise TypeError(raw)
            return int(raw)
        if kind is tuple:
            return _strings(raw)
        if kind is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise TypeError(raw)
            return float(raw)
        if not isinstance(raw, str):
            raise TypeError(raw)
        return raw
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} must be {_KINDS[kind]}") from None


def _strings(raw: Any) -> tuple[str, ...]:
    """A list of strings, or one comma separated string, as a tuple.

    Items are trimmed and empty ones dropped; an item of a list may not
    hold a comma (the list form has no separator inside an item).
    """
    if isinstance(raw, str):
        items: list[Any] = raw.split(",")
    elif isinstance(raw, Sequence) and not isinstance(raw, bytes):
        items = list(raw)
        if any(isinstance(i, str) and "," in i for i in items):
            raise ValueError(raw)
    else:
        raise TypeError(raw)
    if not all(isinstance(i, str) for i in items):
        raise TypeError(raw)
    return tuple(i.strip() for i in items if i.strip())


_KINDS = {
    tuple: "a list of strings without commas, or one comma separated string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}
