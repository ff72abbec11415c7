"""The lean HMAC JWT verifier gives PyJWT's answer for every token.

PyJWT is the oracle: each token is checked by ``JWTAuthenticator.check``
(the lean path for HS*) and by the same authenticator's PyJWT path, and
both must accept it with the same claims or refuse it with the same
reason. The cases cover tampering, algorithm confusion, every claim
check, bad encodings and random mutations.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sanic_chat import Unauthorized
from sanic_chat.authenticators import JWTAuthenticator
from sanic_chat.jwt_hmac import Delegate, HMACVerifier, b64url

SECRET = "test-secret-with-enough-length-for-hs512-" * 2
OTHER = "another-secret-that-is-long-enough-for-hs512" * 2


def enc(part: bytes) -> str:
    return base64.urlsafe_b64encode(part).rstrip(b"=").decode()


def raw(
    header: Any, payload: Any, key: str = SECRET, alg: str = "HS256"
) -> str:
    """A token built by hand: any header and payload, signed with ``alg``."""
    head = enc(json.dumps(header).encode())
    body = enc(
        payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    )
    signing = f"{head}.{body}".encode()
    algorithm = jwt.get_algorithm_by_name(alg)
    sig = algorithm.sign(signing, algorithm.prepare_key(key))
    return f"{head}.{body}.{enc(sig)}"


def outcome(decide: Callable[[str], Any], token: str) -> tuple[str, Any]:
    try:
        return "ok", decide(token)
    except Unauthorized as exc:
        return "refused", exc.reason
    except Exception as exc:  # the same crash, if any, on both paths
        return "raised", type(exc).__name__


def same(auth: JWTAuthenticator, token: str) -> tuple[str, Any]:
    """Assert the lean path and PyJWT agree on ``token``; return it."""
    assert auth._verifier() is not None, "the lean path is not in use"
    lean = outcome(lambda t: auth.check(t).claims, token)
    oracle = outcome(auth._decode, token)
    if oracle[0] == "ok":
        # check() also reads the id claim and exp after decoding.
        oracle = outcome(lambda t: _user_claims(auth, auth._decode(t)), token)
    assert lean == oracle, token
    return lean


def _user_claims(auth: JWTAuthenticator, claims: dict[str, Any]) -> Any:
    user_id = claims.get(auth.id_claim)
    if not isinstance(user_id, str) or not user_id:
        raise Unauthorized("malformed")
    float(claims["exp"])
    return claims


NOW = int(time.time())
GOOD = {"sub": "u1", "name": "Ann", "exp": NOW + 600}

CLAIM_CASES: list[dict[str, Any]] = [
    GOOD,
    {"sub": "u1"},
    {"exp": NOW + 600},
    {"sub": None, "exp": NOW + 600},
    {"sub": "", "exp": NOW + 600},
    {"sub": 5, "exp": NOW + 600},
    {"sub": "u1", "exp": None},
    {"sub": "u1", "exp": NOW - 5},
    {"sub": "u1", "exp": NOW - 20},
    {"sub": "u1", "exp": NOW + 5},
    {"sub": "u1", "exp": "123"},
    {"sub": "u1", "exp": str(NOW + 600)},
    {"sub": "u1", "exp": f" {NOW + 600} "},
    {"sub": "u1", "exp": "1_9999_999_999"},
    {"sub": "u1", "exp": "soon"},
    {"sub": "u1", "exp": [1]},
    {"sub": "u1", "exp": {}},
    {"sub": "u1", "exp": True},
    {"sub": "u1", "exp": NOW + 600.7},
    {"sub": "u1", "exp": 1e400},
    {"sub": "u1", "exp": 10**400},
    {"sub": "u1", "exp": NOW + 600, "nbf": NOW + 3600},
    {"sub": "u1", "exp": NOW + 600, "nbf": NOW + 10},
    {"sub": "u1", "exp": NOW + 600, "nbf": NOW - 10},
    {"sub": "u1", "exp": NOW + 600, "nbf": "x"},
    {"sub": "u1", "exp": NOW + 600, "nbf": None},
    {"sub": "u1", "exp": NOW + 600, "iat": NOW + 3600},
    {"sub": "u1", "exp": NOW + 600, "iat": NOW},
    {"sub": "u1", "exp": NOW + 600, "iat": "x"},
    {"sub": "u1", "exp": NOW + 600, "iat": None},
    {"sub": "u1", "exp": NOW - 5, "nbf": NOW + 3600},
    {"sub": "u1", "exp": "x", "nbf": NOW + 3600},
    {**GOOD, "aud": "chat"},
    {**GOOD, "aud": ["x", "chat"]},
    {**GOOD, "aud": ["x"]},
    {**GOOD, "aud": "other"},
    {**GOOD, "aud": ""},
    {**GOOD, "aud": []},
    {**GOOD, "aud": 0},
    {**GOOD, "aud": 5},
    {**GOOD, "aud": ["chat", 5]},
    {**GOOD, "aud": {"chat": 1}},
    {**GOOD, "aud": None},
    {**GOOD, "iss": "me"},
    {**GOOD, "iss": "you"},
    {**GOOD, "iss": 5},
    {**GOOD, "iss": None},
    {**GOOD, "iss": ["me"]},
    {**GOOD, "jti": "a"},
    {**GOOD, "jti": 5},
    {**GOOD, "iss": "you", "aud": "other"},
    {**GOOD, "aud": "other", "jti": 5},
    {**GOOD, "name": 5},
    {**GOOD, "aud": "chat", "iss": "me"},
    {**GOOD, "aud": ["chat"], "iss": "me", "exp": NOW - 20},
    {**GOOD, "aud": ["chat"], "iss": "me", "nbf": NOW + 20},
    {**GOOD, "extra": {"deep": [1, 2, {"x": None}]}},
]

SETTINGS: list[dict[str, Any]] = [
    {},
    {"audience": "chat"},
    {"issuer": "me"},
    {"audience": "chat", "issuer": "me", "leeway": 30},
    {"leeway": 30.5},
    {"id_claim": "uid"},
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_every_claim_case_matches_pyjwt(
    settings: dict[str, Any], alg: str
) -> None:
    auth = JWTAuthenticator(SECRET, algorithms=[alg], **settings)
    answers = set()
    for claims in CLAIM_CASES:
        for variant in (claims, {**claims, "uid": claims.get("sub")}):
            answers.add(
                same(auth, raw({"alg": alg, "typ": "JWT"}, variant, alg=alg))[
                    0
                ]
            )
    assert answers >= {"ok", "refused"}  # the cases test both sides


def test_reasons_are_the_documented_ones() -> None:
    auth = JWTAuthenticator(SECRET, audience="chat", issuer="me")
    good = {**GOOD, "aud": "chat", "iss": "me"}
    cases = {
        "expired": {**good, "exp": NOW - 5},
        "not_yet_valid": {**good, "nbf": NOW + 3600},
        "wrong_audience": {**good, "aud": "other"},
        "wrong_issuer": {**good, "iss": "you"},
        "malformed": {**good, "exp": None},
    }
    for reason, claims in cases.items():
        assert same(auth, jwt.encode(claims, SECRET)) == ("refused", reason)
    assert same(auth, jwt.encode(good, OTHER)) == ("refused", "bad_signature")
    assert same(auth, jwt.encode(good, SECRET))[0] == "ok"


HEADERS: list[Any] = [
    {"alg": "HS256"},
    {"alg": "HS256", "typ": "JWT"},
    {"alg": "HS256", "typ": "anything"},
    {"alg": "HS256", "kid": "k1"},
    {"alg": "HS256", "kid": 5},
    {"alg": "HS256", "crit": ["b64"], "b64": True},
    {"alg": "HS256", "crit": ["b64"], "b64": False},
    {"alg": "HS256", "crit": ["b64"]},
    {"alg": "HS256", "crit": ["exp"]},
    {"alg": "HS256", "crit": []},
    {"alg": "HS256", "crit": "b64", "b64": True},
    {"alg": "HS256", "crit": [5]},
    {"alg": "HS256", "b64": False},
    {"alg": "HS256", "b64": 0},
    {"alg": "HS256", "b64": None},
    {"alg": "HS384"},
    {"alg": "none"},
    {"alg": "None"},
    {"alg": ""},
    {"alg": None},
    {"alg": ["HS256"]},
    {"alg": {"x": 1}},
    {"alg": "RS256"},
    {"alg": "ES256"},
    {"alg": "hs256"},
    {},
    [],
    ["HS256"],
    "HS256",
    5,
    None,
]


@pytest.mark.parametrize("header", HEADERS, ids=repr)
def test_headers_match_pyjwt(header: Any) -> None:
    auth = JWTAuthenticator(SECRET, algorithms=["HS256", "HS512"])
    for alg in ("HS256", "HS384", "HS512"):
        for payload in (GOOD, b"", b"not json", [1], "s"):
            same(auth, raw(header, payload, alg=alg))


def test_algorithm_confusion_and_none() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        private.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )
    # An RSA public key as the HMAC secret of a forged HS256 token.
    forged = raw({"alg": "HS256", "typ": "JWT"}, GOOD, key=SECRET)
    head, body, _ = forged.split(".")
    import hashlib
    import hmac as hmac_

    sig = hmac_.new(public.encode(), f"{head}.{body}".encode(), hashlib.sha256)
    forged = f"{head}.{body}.{enc(sig.digest())}"
    both = JWTAuthenticator(public, algorithms=["RS256", "HS256"])
    assert both._keys == {}  # PyJWT refuses a PEM key as an HMAC secret
    assert outcome(lambda t: both.check(t).claims, forged)[0] != "ok"
    rs = jwt.encode(GOOD, private, algorithm="RS256")
    assert both.check(rs).id == "u1"
    # The HMAC authenticator never accepts "none" nor an RS256 token.
    auth = JWTAuthenticator(SECRET)
    none = jwt.encode(GOOD, None, algorithm="none")
    assert same(auth, none) == ("refused", "bad_signature")
    assert same(auth, rs) == ("refused", "bad_signature")
    assert same(auth, none + "AAAA")[0] == "refused"
    assert JWTAuthenticator(
        SECRET, algorithms=["none", "HS256"]
    ).algorithms == ["HS256"]


def test_tampered_tokens_are_refused_like_pyjwt() -> None:
    auth = JWTAuthenticator(SECRET)
    token = jwt.encode(GOOD, SECRET)
    head, body, sig = token.split(".")
    evil = enc(json.dumps({**GOOD, "sub": "admin"}).encode())
    hs512 = enc(b'{"alg":"HS512"}')
    unclosed = enc(b'{"alg":"HS256"')
    not_utf8 = enc(b"\xff\xfe")
    utf16 = enc(json.dumps({"alg": "HS256"}).encode("utf-16"))
    deep = enc(b"[" * 100000)
    cases = [
        f"{head}.{evil}.{sig}",
        f"{hs512}.{body}.{sig}",
        f"{head}.{body}.{sig[:-1]}",
        f"{head}.{body}.",
        f"{head}.{body}",
        f"{head}.{body}.{sig}.",
        f"{head}.{body}.{sig}===",
        f"{head}.{body}.{sig}!",
        f"{head}.{body}+.{sig}",
        f"{head}.{body}/.{sig}",
        f"{head}.{body} .{sig}",
        f" {token}",
        f"{token} ",
        f"{head}.{body}.{body}.{sig}",
        f"{head}..{sig}",
        f"..{sig}",
        "..",
        ".",
        "",
        "a.b.c",
        "abc",
        "é.é.é",
        "\x00.\x00.\x00",
        token.replace(".", ".\n"),
        f"{head}.{body}.{sig[:-1]}" + ("B" if sig[-1] != "B" else "C"),
        f"{unclosed}.{body}.{sig}",
        f"{not_utf8}.{body}.{sig}",
        f"{deep}.{body}.{sig}",
        f"{head}.{deep}.{sig}",
        raw({"alg": "HS256"}, b"[" * 100000),
        raw({"alg": "HS256"}, b"{" + b'"a":' * 1 + b"1}" + b" " * 10),
        raw({"alg": "HS256"}, b'{"sub":"u1","exp":NaN}'),
        raw({"alg": "HS256"}, b'{"sub":"u1","exp":Infinity}'),
        raw({"alg": "HS256"}, b'{"sub":"u1","exp":-Infinity}'),
        raw({"alg": "HS256"}, json.dumps(GOOD).encode() + b"\xff"),
        "x" * 100000,
        (head + ".") * 1000 + sig,
    ]
    for case in cases:
        assert same(auth, case)[0] != "ok", case
    # Padding: PyJWT accepts up to two "=" on a multiple of 4 only.
    for padded in (f"{head}=.{body}.{sig}", f"{head}.{body}=.{sig}",
                   f"{head}.{body}.{sig}=", f"{head}.{body}.{sig}==",
                   f"{head}==.{body}.{sig}", f"{head}.{body}==.{sig}"):  # fmt: skip
        same(auth, padded)
    # JSON in UTF-8 with a BOM, or UTF-16: json.loads reads bytes so.
    for encoded in (b"\xef\xbb\xbf" + json.dumps(GOOD).encode(),
                    json.dumps(GOOD).encode("utf-16")):  # fmt: skip
        same(auth, raw({"alg": "HS256"}, encoded))
    same(auth, f"{utf16}.{body}.{sig}")
    # Repeated keys: the last one counts, for both.
    twice = b'{"sub":"u1","sub":"u2","exp":99999999999}'
    assert same(auth, raw({"alg": "HS256"}, twice))[1]["sub"] == "u2"


def test_non_canonical_base64_is_refused() -> None:
    # "AB" decodes to one byte whose canonical encoding is "AA".
    assert b64url(b"AA") == b"\x00"
    for bad in (b"AB", b"A", b"AA=", b"AA===", b"A+", b"A/", b"AA.", b"A A"):
        with pytest.raises(ValueError):
            b64url(bad)
    assert b64url(b"AA==") == b"\x00"
    assert b64url(b"") == b""
    auth = JWTAuthenticator(SECRET)
    head, body, sig = jwt.encode(GOOD, SECRET).split(".")
    # Flip the stray bits of the signature's last character: same bytes.
    alphabet = (
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    last = alphabet.index(sig[-1])
    for stray in range(1, 4):
        twin = sig[:-1] + alphabet[last ^ stray]
        assert same(auth, f"{head}.{body}.{twin}")[0] == "refused"
    assert same(auth, f"{head}.{body}.{sig}")[0] == "ok"


def test_random_mutations_match_pyjwt() -> None:
    rng = random.Random(17)
    auth = JWTAuthenticator(
        SECRET, algorithms=["HS256", "HS384"], audience="a"
    )
    seeds = [
        jwt.encode({**GOOD, "aud": "a"}, SECRET, algorithm=alg)
        for alg in ("HS256", "HS384", "HS512")
    ]
    chars = (
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
    )
    seen: set[str] = set()
    for _ in range(3000):
        token = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(token))
            action = rng.randrange(3)
            if action == 0:
                token[where] = rng.choice(chars)
            elif action == 1:
                del token[where]
            else:
                token.insert(where, rng.choice(chars))
        seen.add(same(auth, "".join(token))[0])
    assert "refused" in seen


def test_random_claims_match_pyjwt() -> None:
    rng = random.Random(6455)
    auth = JWTAuthenticator(SECRET, audience="chat", issuer="me", leeway=5)
    values: list[Any] = [
        None, True, 0, 1, -1, NOW, NOW - 4, NOW - 6, NOW + 4, NOW + 6,
        NOW + 600, "me", "chat", "", "x", [], ["chat"], ["x", 1], {}, 1.5,
        str(NOW + 600),
    ]  # fmt: skip
    names = ["sub", "exp", "nbf", "iat", "aud", "iss", "jti", "name"]
    answers = set()
    for _ in range(3000):
        claims = {n: rng.choice(values) for n in names if rng.random() < 0.6}
        answers.add(same(auth, raw({"alg": "HS256"}, claims))[1])
    assert {"expired", "not_yet_valid", "wrong_issuer", "malformed"} <= answers


def test_wrong_key_and_key_changes() -> None:
    auth = JWTAuthenticator(SECRET, algorithms=["HS256", "HS512"])
    for alg in ("HS256", "HS512"):
        assert same(auth, jwt.encode(GOOD, OTHER, algorithm=alg)) == (
            "refused",
            "bad_signature",
        )
    # The settings are public attributes: a changed key is used at once.
    auth.key = OTHER
    assert same(auth, jwt.encode(GOOD, OTHER))[0] == "ok"
    assert same(auth, jwt.encode(GOOD, SECRET)) == ("refused", "bad_signature")
    auth.audience = "chat"
    assert same(auth, jwt.encode(GOOD, OTHER)) == ("refused", "malformed")
    bytes_key = JWTAuthenticator(SECRET.encode())
    assert same(bytes_key, jwt.encode(GOOD, SECRET))[0] == "ok"


def test_changed_algorithms_are_used_at_once() -> None:
    # Like the key, the algorithms are a public setting: dropping one
    # must refuse its tokens on the lean path too, as PyJWT does.
    auth = JWTAuthenticator(SECRET, algorithms=["HS256", "HS512"])
    hs256 = jwt.encode(GOOD, SECRET, algorithm="HS256")
    assert same(auth, hs256)[0] == "ok"
    auth.algorithms = ["HS512"]
    assert same(auth, hs256) == ("refused", "bad_signature")
    assert same(auth, jwt.encode(GOOD, SECRET, algorithm="HS512"))[0] == "ok"
    auth.algorithms.append("HS384")  # changed in place
    assert same(auth, jwt.encode(GOOD, SECRET, algorithm="HS384"))[0] == "ok"


def test_short_key_warns_once_at_construction() -> None:
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        auth = JWTAuthenticator("short")
    token = jwt.encode(GOOD, "short" * 8)
    assert outcome(auth.check, token) == ("refused", "bad_signature")


def test_keys_pyjwt_refuses_stay_refused() -> None:
    jwk = json.dumps({"kty": "oct", "k": "c2VjcmV0"})
    auth = JWTAuthenticator(jwk)
    assert auth._keys == {} and auth._verifier() is None
    token = raw({"alg": "HS256"}, GOOD, key=SECRET)
    assert outcome(auth.check, token) == ("refused", "malformed")


def test_verifier_delegates_other_algorithms() -> None:
    verifier = HMACVerifier(
        {"HS256": SECRET.encode()},
        algorithms=["HS256", "RS256"],
        require=["exp"],
        audience=None,
        issuer=None,
        leeway=0,
    )
    with pytest.raises(Delegate):
        verifier.decode(raw({"alg": "RS256"}, GOOD))
    with pytest.raises(Delegate):
        verifier.decode(raw({"typ": "JWT"}, GOOD))
    assert verifier.decode(raw({"alg": "HS256"}, GOOD)) == GOOD


def test_time_claims_at_their_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PyJWT: expired when exp <= now - leeway; early when nbf/iat > now + leeway.
    from sanic_chat import jwt_hmac

    monkeypatch.setattr(jwt_hmac.time, "time", lambda: 1000.0)
    verifier = HMACVerifier(
        {"HS256": SECRET.encode()},
        algorithms=["HS256"],
        require=["exp"],
        audience=None,
        issuer=None,
        leeway=10,
    )

    def reason(**claims: Any) -> str:
        try:
            verifier.decode(raw({"alg": "HS256"}, claims))
        except Unauthorized as exc:
            return exc.reason
        return "ok"

    assert reason(exp=990) == "expired"
    assert reason(exp=991) == "ok"
    assert reason(exp=2000, nbf=1010) == "ok"
    assert reason(exp=2000, nbf=1011) == "not_yet_valid"
    assert reason(exp=2000, iat=1010) == "ok"
    assert reason(exp=2000, iat=1011) == "not_yet_valid"


def test_header_memory_is_bounded() -> None:
    auth = JWTAuthenticator(SECRET)
    for i in range(100):
        assert (
            same(auth, raw({"alg": "HS256", "kid": f"k{i}"}, GOOD))[0] == "ok"
        )
        bad = raw({"alg": "HS256", "kid": i}, GOOD)
        assert same(auth, bad) == ("refused", "malformed")
    verifier = auth._verifier()
    assert verifier is not None
    assert len(verifier._headers) == 16


def test_forged_tokens_take_no_header_memory() -> None:
    # Without the key nobody may fill the remembered headers: an issuer's
    # own header must still be remembered after a flood of forgeries.
    auth = JWTAuthenticator(SECRET)
    for i in range(50):
        forged = raw({"alg": "HS256", "kid": f"k{i}"}, GOOD, key=OTHER)
        assert same(auth, forged) == ("refused", "bad_signature")
    verifier = auth._verifier()
    assert verifier is not None
    assert verifier._headers == {}
    token = raw({"alg": "HS256", "typ": "JWT"}, GOOD)
    assert same(auth, token)[0] == "ok"
    assert list(verifier._headers.values()) == ["HS256"]


def test_segment_decoding_matches_pyjwt_exhaustively() -> None:
    # Every short string over characters that matter (both alphabets,
    # padding, separators), and every final character after a prefix.
    import itertools

    from jwt.api_jws import PyJWS

    def pyjwt(segment: bytes) -> tuple[str, bytes]:
        try:
            return "ok", PyJWS._decode_base64url_segment(segment, "x")
        except jwt.DecodeError:
            return "bad", b""

    def ours(segment: bytes) -> tuple[str, bytes]:
        try:
            return "ok", b64url(segment)
        except ValueError:
            return "bad", b""

    cases = [
        bytes(t)
        for n in range(5)
        for t in itertools.product(b"AB_-Qgw0=+./", repeat=n)
    ]
    alphabet = (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    for length in range(8):
        for last in alphabet:
            body = b"A" * length + bytes([last])
            cases += [body, body + b"=", body + b"=="]
    verdicts = set()
    for segment in cases:
        assert ours(segment) == pyjwt(segment), segment
        verdicts.add(ours(segment)[0])
    assert verdicts == {"ok", "bad"}


def test_a_key_object_beside_hmac_leaves_hmac_tokens_to_pyjwt() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    auth = JWTAuthenticator(
        private.public_key(),  # type: ignore[arg-type]
        algorithms=["RS256", "HS256"],
    )
    assert auth._keys == {}
    assert auth.check(jwt.encode(GOOD, private, algorithm="RS256")).id == "u1"
    hs = raw({"alg": "HS256"}, GOOD)
    assert outcome(auth.check, hs) == outcome(auth._decode, hs)
    assert outcome(auth.check, hs)[0] != "ok"
