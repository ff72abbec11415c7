"""Built-in authenticators and where they find a token.

An authenticator is any async callable ``(request) -> User | None`` (see
:class:`~sanic_chat.identity.Authenticator`). It may also raise
:class:`~sanic_chat.errors.Forbidden` for an identity that is valid but
not allowed in (the upgrade is answered 403),
:class:`~sanic_chat.errors.Unauthorized` to say why there is no identity
(the 401 answer and its log line carry the reason), and
:class:`~sanic_chat.errors.BadCredentials` for a 400 whose message the
client may see. Both built-in ones can also identify a bare token for
``refresh`` (:class:`~sanic_chat.identity.RefreshingAuthenticator`).
The built-in ones raise ``Unauthorized``: ``missing``,
``unknown_token``, and for JWTs ``expired``, ``not_yet_valid``,
``wrong_audience``, ``wrong_issuer``, ``bad_signature`` or
``malformed``.

Tokens are looked for in this order (:func:`token_from_request`):

1. ``Authorization: Bearer <token>``;
2. the ``token`` query parameter;
3. a cookie, ``chat_token`` unless configured otherwise;
4. the ``Sec-WebSocket-Protocol`` header: browsers cannot set headers on a
   WebSocket, so they offer ``new WebSocket(url, ["sanic-chat",
   "bearer.<token>"])``; the server answers ``sanic-chat`` and never
   echoes the token.
"""

from __future__ import annotations

import hmac
import inspect
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from sanic import Request

from .errors import Unauthorized
from .identity import RefreshingAuthenticator, User
from .jwt_hmac import HASHES, Delegate, HMACVerifier
from .query import query_value

SUBPROTOCOL = "sanic-chat"
BEARER_PREFIX = "bearer."


def token_from_request(
    request: Request, *, cookie: str = "chat_token"
) -> str | None:
    """Return the first token the request carries, in the documented order."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    query = query_value(request.query_string, "token")
    if query:
        return query
    from_cookie = request.cookies.get(cookie)
    if isinstance(from_cookie, str) and from_cookie:
        return from_cookie
    for offered in request.headers.get("sec-websocket-protocol", "").split(
        ","
    ):
        offered = offered.strip()
        if offered.startswith(BEARER_PREFIX) and len(offered) > 7:
            return offered[len(BEARER_PREFIX) :]
    return None


class JWTAuthenticator(RefreshingAuthenticator):
    """Identify users by a JSON Web Token (PyJWT).

    Requires the ``jwt`` extra (``pip install 'sanic-chat[jwt]'``).

    Args:
        key: The HMAC secret (HS256) or the PEM public key (RS256, ES256).
        algorithms: Accepted algorithms; never ``none``. Default
            ``["HS256"]``.
        audience: Required ``aud``, if any.
        issuer: Required ``iss``, if any.
        leeway: Seconds of clock skew tolerated on ``exp``/``nbf``.
        id_claim: Claim holding the user id (``sub``).
        name_claim: Claim holding the display name (``name``; the id when
            missing).
        cookie: Name of the cookie a token may come in.

    The token's ``exp`` is required and becomes :attr:`User.expires_at`,
    so a connection whose token expires without ``refresh`` is closed.

    HS256/384/512 tokens are verified by :mod:`sanic_chat.jwt_hmac`
    (PyJWT's checks, at a fraction of its cost), others by PyJWT.
    """

    def __init__(
        self,
        key: str | bytes,
        *,
        algorithms: Iterable[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        id_claim: str = "sub",
        name_claim: str = "name",
        cookie: str = "chat_token",
    ) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - depends on extra
            raise ImportError(
                "JWTAuthenticator needs PyJWT: pip install 'sanic-chat[jwt]'"
            ) from exc
        self._jwt = jwt
        self.algorithms = [a for a in algorithms if a.lower() != "none"]
        if not self.algorithms:
            raise ValueError("JWTAuthenticator needs at least one algorithm")
        self._decoder = _decoder_with_key_cache(jwt, self.algorithms)
        self.key = key
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.id_claim = id_claim
        self.name_claim = name_claim
        self.cookie = cookie
        self._lean: HMACVerifier | None = None
        self._lean_of: tuple[Any, ...] = ()
        self._keys_of = (key, tuple(self.algorithms))
        self._keys = _hmac_keys(self._decoder, self.algorithms, key)

    def _verifier(self) -> HMACVerifier | None:
        """The HMAC verifier for the current settings (they are public)."""
        algorithms = tuple(self.algorithms)
        settings = (self.key, self.audience, self.issuer, self.leeway,
                    self.id_claim, algorithms)  # fmt: skip
        if settings == self._lean_of:
            return self._lean
        key_of, algorithms_of = self._keys_of
        if self.key is not key_of or algorithms != algorithms_of:
            self._keys = _hmac_keys(self._decoder, self.algorithms, self.key)
            self._keys_of = (self.key, algorithms)
        leeway = self.leeway
        self._lean = (
            HMACVerifier(
                self._keys,
                algorithms=list(algorithms),
                require=["exp", self.id_claim],
                audience=self.audience,
                issuer=self.issuer,
                leeway=leeway.total_seconds()
                if isinstance(leeway, timedelta)
                else leeway,
            )
            if self._keys
            else None
        )
        self._lean_of = settings
        return self._lean

    async def __call__(self, request: Request) -> User:
        """Return the token's user.

        Raises:
            Unauthorized: No token (``missing``) or an invalid one, with
                the reason (see :meth:`check`).
        """
        token = token_from_request(request, cookie=self.cookie)
        if token is None:
            raise Unauthorized("missing")
        return self.check(token)

    async def from_token(self, token: str) -> User | None:
        """Return the user of ``token`` (used by ``refresh``)."""
        return self.verify(token)

    def verify(self, token: str) -> User | None:
        """Decode and check ``token``; ``None`` if it is not valid."""
        try:
            return self.check(token)
        except Unauthorized:
            return None

    def check(self, token: str) -> User:
        """Decode and check ``token``, or say why it is not valid.

        Raises:
            Unauthorized: ``expired``, ``not_yet_valid``,
                ``wrong_audience``, ``wrong_issuer``, ``bad_signature``
                (wrong key, or an algorithm not in ``algorithms``) or
                ``malformed`` (not a JWT, or ``exp`` or the id claim
                missing or invalid).
        """
        lean = self._verifier()
        if lean is not None:
            try:
                claims = lean.decode(token)
            except Delegate:
                claims = self._decode(token)
        else:
            claims = self._decode(token)
        user_id = claims.get(self.id_claim)
        if not isinstance(user_id, str) or not user_id:
            raise Unauthorized("malformed")
        name = claims.get(self.name_claim)
        return User(
            id=user_id,
            name=name if isinstance(name, str) and name else user_id,
            claims=claims,
            expires_at=float(claims["exp"]),
        )

    def _decode(self, token: str) -> dict[str, Any]:
        """Decode ``token`` with PyJWT (an algorithm not HMAC's)."""
        jwt = self._jwt
        try:
            claims: dict[str, Any] = self._decoder.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", self.id_claim]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(_jwt_reason(jwt, exc)) from None
        return claims


def _hmac_keys(
    decoder: Any, algorithms: list[str], key: str | bytes
) -> dict[str, bytes]:
    """``key`` prepared by PyJWT for each configured HMAC algorithm.

    An algorithm whose key PyJWT refuses (a PEM, SSH or JWK key given as
    a secret) is left out: PyJWT keeps refusing its tokens. A short key
    is warned about once, here, as PyJWT would on every decode.
    """
    registry = getattr(getattr(decoder, "_jws", None), "_algorithms", None)
    if not isinstance(registry, dict):
        return {}
    from jwt import PyJWTError
    from jwt.warnings import InsecureKeyLengthWarning

    keys: dict[str, bytes] = {}
    for name in algorithms:
        algorithm = registry.get(name)
        if name not in HASHES or algorithm is None:
            continue
        try:
            prepared = algorithm.prepare_key(key)
        except (PyJWTError, TypeError, ValueError):
            continue  # e.g. a key object: PyJWT answers as it always did
        if not isinstance(prepared, bytes):
            continue
        short = algorithm.check_key_length(prepared)
        if short:
            warnings.warn(short, InsecureKeyLengthWarning, stacklevel=3)
        keys[name] = prepared
    return keys


def _jwt_reason(jwt: Any, exc: Exception) -> str:
    """The reason code of a PyJWT error (subclasses before their bases)."""
    reasons = (
        (jwt.ExpiredSignatureError, "expired"),
        (jwt.ImmatureSignatureError, "not_yet_valid"),
        (jwt.InvalidAudienceError, "wrong_audience"),
        (jwt.InvalidIssuerError, "wrong_issuer"),
        (jwt.InvalidSignatureError, "bad_signature"),
        (jwt.InvalidAlgorithmError, "bad_signature"),
    )
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    # DecodeError, MissingRequiredClaimError, InvalidIssuedAtError and
    # the rest: the token is not one we can read.
    return "malformed"


Verify = Callable[[str], "User | Awaitable[User | None] | None"]


class TokenAuthenticator(RefreshingAuthenticator):
    """Identify users by opaque tokens: a static map or a verify function.

    Args:
        tokens: ``{token: User}``; compared in constant time.
        verify: Called with the token, returns the user or ``None``
            (may be async): look it up in your session store.
        cookie: Name of the cookie a token may come in.
    """

    def __init__(
        self,
        tokens: Mapping[str, User] | None = None,
        *,
        verify: Verify | None = None,
        cookie: str = "chat_token",
    ) -> None:
        if (tokens is None) == (verify is None):
            raise ValueError("give exactly one of tokens and verify")
        self._tokens = dict(tokens or {})
        self._verify = verify
        self.cookie = cookie

    async def __call__(self, request: Request) -> User:
        """Return the user of the request's token.

        Raises:
            Unauthorized: No token (``missing``), or one that is not in
                the map or that ``verify`` returned ``None`` for
                (``unknown_token``).
        """
        token = token_from_request(request, cookie=self.cookie)
        if token is None:
            raise Unauthorized("missing")
        user = await self.from_token(token)
        if user is None:
            raise Unauthorized("unknown_token")
        return user

    async def from_token(self, token: str) -> User | None:
        """Return the user of ``token``, or ``None``."""
        if self._verify is not None:
            result = self._verify(token)
            if inspect.isawaitable(result):
                result = await result
            return result
        found = None
        for known, user in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found


class _KeyCache:
    """A PyJWT algorithm whose ``prepare_key`` remembers its last key.

    PyJWT prepares the key on every decode: for HMAC it scans the secret
    for PEM and SSH markers, for RS256/ES256 it parses the PEM. The key
    of an authenticator never changes, so that work is done once.
    """

    def __init__(self, algorithm: Any) -> None:
        self._algorithm = algorithm
        self._key: object = None
        self._prepared: Any = None

    def prepare_key(self, key: Any) -> Any:
        if key is not self._key or self._prepared is None:
            self._prepared = self._algorithm.prepare_key(key)
            self._key = key
        return self._prepared

    def __getattr__(self, name: str) -> Any:
        return getattr(self._algorithm, name)


def _decoder_with_key_cache(jwt: Any, algorithms: list[str]) -> Any:
    """A private ``PyJWT`` whose algorithms cache their prepared key.

    Falls back to PyJWT's module-level decoder if its internals differ.
    """
    decoder = jwt.PyJWT()
    registry = getattr(getattr(decoder, "_jws", None), "_algorithms", None)
    if not isinstance(registry, dict):
        return jwt
    for name in algorithms:
        if name in registry:
            registry[name] = _KeyCache(registry[name])
    return decoder
