"""Where the client's token comes from, and when to renew it.

A fixed ``token`` is used as is. With ``get_token`` (a callable, sync
or async, returning the token) the client asks for one before every
connect, again shortly before the token expires (and sends it in a
``refresh`` frame, so the socket stays up) and once more after the
server refused the credentials, before giving up. The expiry is the
JWT's ``exp``, read without verifying the signature: only the server
can check it, the client only needs to know when to ask.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenGetter", "TokenSource", "expires_at", "refresh_delay"]

TokenGetter = Callable[[], "str | Awaitable[str | None] | None"]
"""A callable returning a token, or an awaitable of one."""

logger = logging.getLogger(__name__)

EARLY = 60.0  # seconds before expiry a long-lived token is renewed
SHARE = 0.8  # of its remaining lifetime, when that is sooner


class TokenSource:
    """The token to offer on the next connect.

    Args:
        token: The initial token (None: none, or ask ``get_token``).
        get_token: Asked for a fresh token, see the module docstring.
    """

    def __init__(
        self, token: str | None, get_token: TokenGetter | None
    ) -> None:
        self.token = token
        self.get_token = get_token

    @property
    def renewable(self) -> bool:
        """Whether a new token can be asked for."""
        return self.get_token is not None

    async def fresh(
        self,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str | None:
        """Ask ``get_token`` (if any) and return the token to use now.

        A coroutine that has not answered in ``timeout`` seconds is given
        up (logged): the client goes on with the token it has, so that a
        token service that hangs cannot stall its reconnects for good.
        """
        if self.get_token is not None:
            try:
                async with asyncio.timeout(timeout):
                    token = self.get_token()
                    if inspect.isawaitable(token):
                        token = await token
            except TimeoutError:
                logger.warning(
                    "get_token gave no token in %s s; using the last one",
                    timeout,
                )
                return self.token
            self.token = token
        return self.token


def expires_at(token: str | None) -> float | None:
    """The ``exp`` of a JWT, unverified; None for any other token."""
    if not token or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        exp = json.loads(raw).get("exp")
    except (ValueError, binascii.Error, AttributeError):
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def refresh_delay(token: str | None, now: float | None = None) -> float | None:
    """Seconds until ``token`` should be renewed; None if it never expires.

    A minute before its expiry, or after 80 % of what is left of its
    lifetime when that comes first (a token valid for a few seconds).
    """
    exp = expires_at(token)
    if exp is None:
        return None
    left = exp - (time.time() if now is None else now)
    return max(left - EARLY, left * SHARE, 0.0)
