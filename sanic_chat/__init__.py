"""sanic-chat: real-time WebSocket chat for any Sanic app.

Usage::

    from sanic import Sanic
    import sanic_chat

    app = Sanic("myapp")
    app.blueprint(sanic_chat.create_blueprint())   # GET /ws is now a chat

See ``docs/`` for the wire protocol, configuration and backends.
"""

from .__about__ import __version__
from .archive import MessageEvent
from .authenticators import JWTAuthenticator, TokenAuthenticator
from .backends import (
    Broadcaster,
    Broker,
    Event,
    Gap,
    HistoryPage,
    Idempotency,
    MemoryBroadcaster,
    Presence,
    PresenceInfo,
    ReadState,
    Receipts,
    Subscription,
    broadcaster_from_url,
)
from .blueprint import ChatBlueprint, create_blueprint
from .chat import Chat, get_chat
from .config import ChatConfig, ChatOptions
from .errors import (
    BadCredentials,
    BroadcasterError,
    BroadcasterUnavailable,
    ChatError,
    CloseCode,
    ConfigError,
    Forbidden,
    ProtocolError,
    Unauthorized,
)
from .hooks import Hooks
from .identity import (
    SYSTEM_USER,
    Authenticator,
    GuestAuthenticator,
    RefreshingAuthenticator,
    User,
)

__all__ = [
    "SYSTEM_USER",
    "Authenticator",
    "BadCredentials",
    "Broadcaster",
    "BroadcasterError",
    "BroadcasterUnavailable",
    "Broker",
    "Chat",
    "ChatBlueprint",
    "ChatConfig",
    "ChatError",
    "ChatOptions",
    "CloseCode",
    "ConfigError",
    "Event",
    "Forbidden",
    "Gap",
    "GuestAuthenticator",
    "HistoryPage",
    "Hooks",
    "Idempotency",
    "JWTAuthenticator",
    "MemoryBroadcaster",
    "MessageEvent",
    "Presence",
    "PresenceInfo",
    "ProtocolError",
    "ReadState",
    "Receipts",
    "RefreshingAuthenticator",
    "Subscription",
    "TokenAuthenticator",
    "Unauthorized",
    "User",
    "__version__",
    "broadcaster_from_url",
    "create_blueprint",
    "get_chat",
]
