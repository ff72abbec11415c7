"""Errors raised by sanic-chat and how each one reaches a client.

Exception tree::

    ChatError                 base of everything raised on purpose
    ├── ProtocolError         a client frame was refused: an ``error`` frame
    │                         with ``code``; the connection stays open
    ├── ConfigError           a ``CHAT_*`` setting or keyword is invalid
    ├── Forbidden             an authenticator refuses a valid identity:
    │                         the upgrade is answered 403
    └── BroadcasterError      the broadcaster cannot serve the request
        └── BroadcasterUnavailable
                              the backend is unreachable right now

Close codes used by the ``/ws`` endpoint live in :class:`CloseCode`.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes that sanic-chat sends (RFC 6455, section 7.4)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL_CLOSURE = 1006  # never sent: the connection was lost
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


class ChatError(Exception):
    """Base class of the errors sanic-chat raises on purpose."""


class ProtocolError(ChatError):
    """A client frame that the server refuses.

    It becomes ``{"type": "error", "code": code, "message": message}`` for
    the client that sent it; nobody else is affected.

    Args:
        code: A stable machine-readable code, e.g. ``"bad_request"``.
        message: A human-readable explanation; never contains a traceback.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Forbidden(ChatError):
    """Raised by an authenticator for an identity that may not connect."""


class ConfigError(ChatError, ValueError):
    """An option or ``CHAT_*`` config key has an invalid value."""


class BroadcasterError(ChatError):
    """The broadcaster could not complete an operation."""


class BroadcasterUnavailable(BroadcasterError):
    """The broadcaster's backend cannot be reached at the moment."""
