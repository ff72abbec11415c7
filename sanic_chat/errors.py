"""Errors raised by sanic-chat and how each one reaches a client.

Exception tree::

    ChatError                 base of everything raised on purpose
    ├── ProtocolError         a client frame was refused: an ``error`` frame
    │                         with ``code``; the connection stays open
    ├── ConfigError           a ``CHAT_*`` setting or keyword is invalid
    ├── Forbidden             an authenticator refuses a valid identity
    │                         (the upgrade is answered 403), or
    │                         ``before_publish`` refuses a message
    ├── Unauthorized          no valid identity, with a stable ``reason``
    │                         (:data:`UNAUTHORIZED_REASONS`): the upgrade
    │                         or API request is answered 401
    ├── BadCredentials        credentials in a form the authenticator
    │                         cannot read (also a ``ValueError``): 400
    │                         with its message
    └── BroadcasterError      the broadcaster cannot serve the request
        └── BroadcasterUnavailable
            │                 the backend is unreachable right now
            └── NotReplicated a message was published but not confirmed
                              by the replicas ``wait_replicas`` asks for

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
        ref: The ``ref`` of the request refused, echoed in the frame.
        room: The ``room`` of the request refused, echoed in the frame.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        ref: str | None = None,
        room: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.room = room


class Forbidden(ChatError):
    """A refusal: of an identity, or of a message by ``before_publish``.

    Raised by an authenticator for an identity that may not connect (the
    upgrade is answered 403), or by a ``before_publish`` hook to refuse a
    message or an edit: the client gets an ``error`` frame with code
    ``forbidden`` and ``str(exc)`` as its message (so write it for the
    user: ``raise Forbidden("links are not allowed here")``), the HTTP
    API a 403 with it, and :meth:`Chat.publish <sanic_chat.Chat.publish>`
    lets it through to its caller.
    """


UNAUTHORIZED_REASONS: dict[str, str] = {
    "missing": "authentication required",
    "expired": "token expired",
    "not_yet_valid": "token not valid yet",
    "wrong_audience": "token issued for another audience",
    "wrong_issuer": "token from another issuer",
    "bad_signature": "token signature or algorithm not accepted",
    "malformed": "token malformed or missing a required claim",
    "unknown_token": "unknown token",
    "invalid_api_key": "invalid API key",
    "rejected": "token rejected",
}
"""Why a request got 401: the ``reason`` of its answer, and its message.

``missing``: no token at all; ``rejected``: a user-written authenticator
returned ``None`` for a request that carried a token. The others come
from the built-in authenticators (``unknown_token`` from
:class:`~sanic_chat.TokenAuthenticator`, the rest from PyJWT's errors in
:class:`~sanic_chat.JWTAuthenticator`) and from the HTTP API's key check.
"""


class Unauthorized(ChatError):
    """No valid identity: the request is answered 401 with ``reason``.

    Raised by the built-in authenticators (and available to yours) so the
    answer and the log line can say why: ``{"error": {"code":
    "unauthorized", "reason": reason, "message": ...}}``. Returning
    ``None`` from an authenticator still works; its reason is then
    ``missing`` or ``rejected``.

    Args:
        reason: A stable code, one of :data:`UNAUTHORIZED_REASONS` for the
            built-in authenticators.
        message: Human-readable; defaults to the reason's own. Never put
            the token in it.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        self.message = message or UNAUTHORIZED_REASONS.get(
            reason, "authentication required"
        )
        super().__init__(self.message)


class BadCredentials(ChatError, ValueError):
    """Credentials in a form the authenticator cannot read: answered 400.

    An authenticator raises it to refuse a request with a message meant
    for the client (the guest authenticator does for a display name it
    does not accept): the upgrade or API request is answered ``{"error":
    {"code": "bad_request", "message": message}}`` with status 400.
    Raising it opts in to showing ``message``, so never put the token or
    anything secret in it.

    Any other exception from an authenticator is not shown to the
    client: a plain ``ValueError`` gets 400 and any other error 500, both
    with a fixed message, and the exception is logged once on the
    ``sanic_chat.auth`` logger. (It is a ``ValueError`` so that code that
    caught the ``ValueError`` raised before it existed still does.)

    Args:
        message: What the client is told; never the credential itself.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ChatError, ValueError):
    """An option or ``CHAT_*`` config key has an invalid value."""


class BroadcasterError(ChatError):
    """The broadcaster could not complete an operation."""


class BroadcasterUnavailable(BroadcasterError):
    """The broadcaster's backend cannot be reached at the moment."""


class NotReplicated(BroadcasterUnavailable):
    """A write reached the primary but not the replicas it had to reach.

    Raised with ``wait_replicas``: the message was published (members
    may have seen it) but may not survive a failover. The sender is told
    ``unavailable``; a resend with the same ref is answered once the
    message is known to be replicated, and is never published twice.

    Args:
        message: What went wrong.
        message_id: The id of the published message, when there is one.
    """

    def __init__(self, message: str, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id
