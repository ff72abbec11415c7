"""The exceptions of the Python client.

::

    ChatClientError             base; ``code`` is the error frame's code
    ├── Unauthorized            HTTP 401 at connect, or closed with 1008;
    │                           the client does not reconnect
    ├── ConnectFailed           no connection within the timeout
    ├── SendTimeout             no ack within the send timeout
    ├── ClientClosed            the client was closed before an answer
    └── Refused                 the server answered a request with an
        ├── Forbidden           ``error`` frame: one subclass per code
        ├── NotJoined           that a caller may want to catch
        ├── NotFound
        ├── TooLarge
        ├── BadRequest
        ├── RateLimited
        └── Unavailable
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ChatClientError",
    "ClientClosed",
    "ConnectFailed",
    "Forbidden",
    "NotFound",
    "NotJoined",
    "RateLimited",
    "Refused",
    "SendTimeout",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "refused",
]


class ChatClientError(Exception):
    """Base of the client's errors.

    Args:
        message: For people.
        code: The server's error code, or the client's own
            (``"unauthorized"``, ``"timeout"``...).
    """

    default_code = "client_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code


class Unauthorized(ChatClientError):
    """The server refused the credentials (401, or close 1008)."""

    default_code = "unauthorized"


class ConnectFailed(ChatClientError):
    """The server could not be reached within the timeout."""

    default_code = "connect_failed"


class SendTimeout(ChatClientError):
    """No ack in time; the message may or may not have been published."""

    default_code = "timeout"


class ClientClosed(ChatClientError):
    """The client was closed while a request waited for its answer."""

    default_code = "closed"


class Refused(ChatClientError):
    """The server answered with an ``error`` frame (``code`` is its)."""

    default_code = "refused"


class Forbidden(Refused):
    """A permission hook (or moderation) refused the request."""

    default_code = "forbidden"


class NotJoined(Refused):
    """The room must be joined first."""

    default_code = "not_joined"


class NotFound(Refused):
    """The message id is not (or no longer) in the room's history."""

    default_code = "not_found"


class TooLarge(Refused):
    """Text or meta over the server's limit."""

    default_code = "too_large"


class BadRequest(Refused):
    """The server found the request invalid."""

    default_code = "bad_request"


class RateLimited(Refused):
    """Too many frames per second."""

    default_code = "rate_limited"


class Unavailable(Refused):
    """The server's broadcaster cannot be reached; retry later."""

    default_code = "unavailable"


_BY_CODE: dict[str, type[Refused]] = {
    cls.default_code: cls
    for cls in (
        Forbidden, NotJoined, NotFound, TooLarge, BadRequest, RateLimited,
        Unavailable,
    )
}  # fmt: skip


def refused(code: str, message: str) -> Refused:
    """Return the exception for an ``error`` frame's ``code``."""
    return _BY_CODE.get(code, Refused)(message, code)
