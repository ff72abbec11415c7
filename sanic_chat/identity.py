"""Who is on the other end of a connection.

The identity of a connection is decided once, before the WebSocket
upgrade, by an :class:`Authenticator`. It is the only source of the
``user`` attached to outgoing messages: nothing a client sends over the
socket can change it.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sanic import Request

from .errors import BadCredentials
from .query import query_value

MAX_NAME_LENGTH = 32

NAME_RULE = (
    "name must be 1 to 32 characters with at least one visible one, "
    "without control, format or line-separator characters or angle "
    "brackets, and not a name the system uses"
)
"""What :func:`valid_display_name` accepts, in words (for error answers)."""

# Unicode categories never allowed in a name: controls (C0, C1), lone
# surrogates, private use, unassigned, line and paragraph separators, and
# format characters (bidi overrides and isolates, zero-width space, soft
# hyphen, BOM, tag characters) but for the joiners below.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn", "Zl", "Zp", "Cf"})
# ZERO WIDTH JOINER builds emoji sequences (a family); ZERO WIDTH
# NON-JOINER is part of Persian and Indic spelling.
_JOINERS = frozenset("\u200d\u200c")
# Letters and symbols that render as blank space: a name made of them
# would look empty.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_VISIBLE_CATEGORIES = frozenset("LNPS")


@dataclass(frozen=True, slots=True)
class User:
    """An identified chat participant.

    Attributes:
        id: Stable unique identifier; always decided by the server.
        name: Display name shown to other members.
        claims: Extra attributes from the authenticator (never sent to
            other clients).
        expires_at: Epoch seconds when the identity's token expires; the
            connection is closed with 1008 then unless it sends
            ``refresh`` with a new token first.
    """

    id: str
    name: str
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False)
    expires_at: float | None = field(default=None, compare=False)

    def public(self) -> dict[str, str]:
        """Return the part of the user that other members may see."""
        return {"id": self.id, "name": self.name}


SYSTEM_USER = User(id="system", name="System")
"""Default sender of messages published from server code."""


class Authenticator(Protocol):
    """Identifies the user behind an upgrade request.

    An authenticator is any async callable that takes the Sanic request
    and returns a :class:`User`, or ``None`` when the request carries no
    valid identity (the endpoint then answers 401 before the upgrade). To
    say why, raise :class:`~sanic_chat.errors.Unauthorized` with a reason
    instead of returning ``None``: the 401 body and the log line carry it.
    Raise :class:`~sanic_chat.errors.Forbidden` for 403, and
    :class:`~sanic_chat.errors.BadCredentials` for 400 with a message
    the client may see. Any other exception is logged and answered with
    a fixed message (400 for a ``ValueError``, else 500), never its text.
    """

    async def __call__(self, request: Request) -> User | None:
        """Return the request's user, or ``None`` if it has none."""


@runtime_checkable
class RefreshingAuthenticator(Authenticator, Protocol):
    """An authenticator that can also identify a bare token: ``refresh``.

    A client extends a session whose identity expires by sending
    ``{"type": "refresh", "token": ...}``; the server asks
    :meth:`from_token` for the token's user, which must be the
    connection's user. Authenticators without this method answer
    ``refresh`` with ``bad_request``. :class:`~sanic_chat.JWTAuthenticator`
    and :class:`~sanic_chat.TokenAuthenticator` implement it; yours may
    subclass this protocol to say so, or simply define the method
    (``isinstance`` checks that it exists, not its signature).
    """

    async def from_token(self, token: str) -> User | None:
        """Return the user ``token`` identifies, or ``None`` if none."""


def valid_display_name(name: str) -> bool:
    """Tell whether ``name`` is an acceptable display name.

    1 to 32 characters (code points), at least one of them visible (a
    letter, number, punctuation or symbol that is not a blank filler);
    none of category ``Cc``, ``Cs``, ``Co``, ``Cn``, ``Zl``, ``Zp`` or
    ``Cf`` (so no bidi overrides, zero-width spaces or C1 controls), but
    for ZERO WIDTH JOINER and NON-JOINER, which emoji sequences and some
    scripts need; no ``<`` or ``>``; and not a name the system uses
    (:func:`reserved_name`).

    It checks form, not resemblance: ``Alice`` spelt with a Cyrillic
    capital A is valid and looks like ``Alice``. Clients should tell guests
    (ids starting with ``guest-``) apart, as the example page does.
    """
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        return False
    visible = False
    for char in name:
        if char in "<>":
            return False
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES and char not in _JOINERS:
            return False
        if category[0] in _VISIBLE_CATEGORIES and char not in _BLANKS:
            visible = True
    return visible and not reserved_name(name)


def _name_key(name: str) -> str:
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in folded if c not in _JOINERS).strip()


_RESERVED = frozenset({_name_key(SYSTEM_USER.name)})


def reserved_name(name: str) -> bool:
    """Tell whether ``name`` reads as a name the system uses.

    Compared after NFKC normalisation, case folding, dropping zero-width
    joiners and surrounding whitespace, so ``SYSTEM``, ``system`` in
    full-width letters and ``System`` all match :data:`SYSTEM_USER`'s
    name.
    Server code may still publish as :data:`SYSTEM_USER`; guests, the
    HTTP API's ``user.name`` and the example's login may not take it.
    """
    return _name_key(name) in _RESERVED


class GuestAuthenticator:
    """Gives every connection a fresh guest identity.

    This is what the endpoint uses when no authenticator is configured.
    The id is always generated by the server; a display name may be
    proposed with the ``name`` query parameter and is validated (an
    invalid one is refused with 400 before the upgrade:
    :class:`~sanic_chat.errors.BadCredentials`).
    """

    async def __call__(self, request: Request) -> User:
        """Return a new guest user for ``request``."""
        uid = "guest-" + secrets.token_hex(6)
        name = query_value(request.query_string, "name")
        if name is None:
            return User(id=uid, name=uid)
        name = name.strip()
        if not valid_display_name(name):
            raise BadCredentials(NAME_RULE)
        return User(id=uid, name=name)
