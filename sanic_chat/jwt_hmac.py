"""A lean verifier for HMAC-signed JWTs (HS256, HS384, HS512).

PyJWT does a lot of Python-level work per decode (option merging, a
per-byte alphabet scan of every segment, the key checks, a warning
filter lookup); on a storm of upgrades that was about 6 % of a worker's
CPU. This module does exactly the checks PyJWT 2 does for the options
:class:`~sanic_chat.authenticators.JWTAuthenticator` passes it, in the
same order, so that every token gets the same answer and the same
reason: the tests hold it to PyJWT as the oracle. The key is prepared
(and refused, when it looks like a PEM, SSH or JWK key) once, by PyJWT
itself. Any other algorithm goes to PyJWT.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from .errors import Unauthorized

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# The last character's bits that encode no byte, by length modulo 4: a
# canonical encoding (PyJWT's test: it re-encodes) has them all zero.
_SPARE_BITS = (0, 0, 0b1111, 0b11)
HASHES: dict[str, Callable[..., Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}
# Critical header extensions PyJWT understands (RFC 7797's ``b64``).
_SUPPORTED_CRIT = frozenset({"b64"})
# Headers remembered (an issuer signs every token with the same one),
# once a token with it is signed; once full, others are parsed each time:
# no token can grow it, and no forger can fill it.
_HEADERS_KEPT = 16
# ... and each at most this long: the memory is bounded in bytes too.
_HEADER_BYTES_KEPT = 512


class Delegate(Exception):
    """The token's algorithm is not one of ours: let PyJWT decide."""


def b64url(segment: bytes) -> bytes:
    """Decode one segment as PyJWT does, or raise ``ValueError``.

    Up to two ``=`` only on a length that is a multiple of 4, only
    base64url characters, and the canonical encoding of what it decodes
    to (no stray bits in the last character).
    """
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4):
        raise ValueError("padding")
    if len(stripped) % 4 == 1 or stripped.translate(None, _ALPHABET):
        raise ValueError("alphabet")
    spare = _SPARE_BITS[len(stripped) % 4]
    if spare and _ALPHABET.index(stripped[-1]) & spare:
        # Bits past the last byte: another spelling of the same bytes.
        raise ValueError("not canonical")
    standard = stripped.translate(_TO_STANDARD)
    return binascii.a2b_base64(standard + b"=" * (-len(standard) % 4))


class HMACVerifier:
    """Verify HS256/384/512 tokens with keys prepared once.

    Args:
        keys: Prepared key bytes by algorithm name, for the configured
            HMAC algorithms whose key PyJWT accepted; each is keyed into
            an HMAC once, copied per token.
        algorithms: Every configured algorithm (an HMAC token whose
            ``alg`` is not in it is refused, as PyJWT does).
        require: Claims that must be present and not null.
        audience, issuer, leeway: As for PyJWT's ``decode``.
    """

    __slots__ = ("_headers", "_macs", "algorithms", "audience", "issuer",
                 "leeway", "require")  # fmt: skip

    def __init__(
        self,
        keys: dict[str, bytes],
        *,
        algorithms: list[str],
        require: list[str],
        audience: str | None,
        issuer: str | None,
        leeway: float,
    ) -> None:
        self._macs = {
            alg: hmac.new(key, digestmod=HASHES[alg])
            for alg, key in keys.items()
        }
        # Valid header segments, by their text: the algorithm they name.
        self._headers: dict[bytes, str] = {}
        self.algorithms = algorithms
        self.require = require
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``.

        Raises:
            Unauthorized: With PyJWT's reason (see ``_jwt_reason``).
            Delegate: The header names an algorithm this does not verify.
            UnicodeEncodeError: ``token`` is not encodable (as PyJWT).
        """
        data = token.encode()
        signing_input, dot, crypto = data.rpartition(b".")
        head, dot2, body = signing_input.partition(b".")
        if not dot or not dot2:
            raise Unauthorized("malformed")
        headers = self._headers
        alg = headers.get(head)
        known = alg is not None
        if alg is None:
            alg = self._header(head)
        try:
            payload = b64url(body)
            signature = b64url(crypto)
        except ValueError:
            raise Unauthorized("malformed") from None
        mac = self._macs[alg].copy()
        mac.update(signing_input)
        if not hmac.compare_digest(signature, mac.digest()):
            raise Unauthorized("bad_signature")
        if (
            not known
            and len(headers) < _HEADERS_KEPT
            and len(head) <= _HEADER_BYTES_KEPT
        ):
            headers[head] = alg  # signed: not a forger's filler
        try:
            claims = json.loads(payload)
        except (ValueError, RecursionError):
            raise Unauthorized("malformed") from None
        if type(claims) is not dict:
            raise Unauthorized("malformed")
        self._check_claims(claims)
        return claims

    def _header(self, head: bytes) -> str:
        """The algorithm of a header segment not seen yet, once checked.

        Raises:
            Unauthorized: ``malformed`` (PyJWT's header checks), or
                ``bad_signature`` for an algorithm not configured.
            Delegate: An algorithm this does not verify.
        """
        try:
            header = json.loads(b64url(head))
        except (ValueError, RecursionError):
            raise Unauthorized("malformed") from None
        if type(header) is not dict:
            raise Unauthorized("malformed")
        alg = header.get("alg")
        if type(alg) is not str or alg not in self._macs:
            raise Delegate
        if header.get("b64", True) is False:
            raise Unauthorized("malformed")  # no detached payload here
        if "kid" in header and not isinstance(header["kid"], str):
            raise Unauthorized("malformed")
        if "crit" in header and not _crit_ok(header):
            raise Unauthorized("malformed")
        if alg not in self.algorithms:
            raise Unauthorized("bad_signature")
        return alg

    def _check_claims(self, claims: dict[str, Any]) -> None:
        """PyJWT's ``_validate_claims`` with its default options."""
        for claim in self.require:
            if claims.get(claim) is None:
                raise Unauthorized("malformed")
        now = time.time()
        leeway = self.leeway
        if "iat" in claims and _int(claims["iat"]) > now + leeway:
            raise Unauthorized("not_yet_valid")
        if "nbf" in claims and _int(claims["nbf"]) > now + leeway:
            raise Unauthorized("not_yet_valid")
        if "exp" in claims and _int(claims["exp"]) <= now - leeway:
            raise Unauthorized("expired")
        if self.issuer is not None:
            if "iss" not in claims:
                raise Unauthorized("malformed")
            if claims["iss"] != self.issuer:  # a non-string never equals
                raise Unauthorized("wrong_issuer")
        _check_audience(claims, self.audience)
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise Unauthorized("malformed")


def _int(value: Any) -> int:
    """``int(value)`` as PyJWT reads a time claim; ``malformed`` if not."""
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError):
        raise Unauthorized("malformed") from None


def _crit_ok(header: dict[str, Any]) -> bool:
    """PyJWT's check of the ``crit`` header: known extensions, present."""
    crit = header["crit"]
    if not isinstance(crit, list) or not crit:
        return False
    return all(
        isinstance(ext, str) and ext in _SUPPORTED_CRIT and ext in header
        for ext in crit
    )


def _check_audience(claims: dict[str, Any], audience: str | None) -> None:
    """PyJWT's ``_validate_aud`` (not strict) for one expected audience."""
    found = claims.get("aud")
    if audience is None:
        if found:
            raise Unauthorized("wrong_audience")
        return
    if not found:
        raise Unauthorized("malformed")  # PyJWT: a missing required claim
    if isinstance(found, str):
        found = [found]
    if not isinstance(found, list) or any(
        not isinstance(c, str) for c in found
    ):
        raise Unauthorized("wrong_audience")
    if audience not in found:
        raise Unauthorized("wrong_audience")
