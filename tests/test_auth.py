"""Authentication before the upgrade, origins, room hooks and refresh."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.request
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sanic import Request
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sanic_chat import Forbidden, User
from sanic_chat.authenticators import JWTAuthenticator, TokenAuthenticator

from .conftest import Client, LiveServer, live, make_app

# Refusals before the upgrade and sessions behave alike on every transport.
pytestmark = pytest.mark.usefixtures("transport")

SECRET = "test-secret-with-enough-length-for-hs256"


def token(sub: str = "u1", name: str = "Alice", **claims: Any) -> str:
    payload = {"sub": sub, "name": name, "exp": int(time.time()) + 60}
    payload.update(claims)
    return jwt.encode(payload, SECRET, algorithm="HS256")


def jwt_app(**options: Any) -> Any:
    options.setdefault("authenticator", JWTAuthenticator(SECRET))
    return make_app(**options)


async def refused(srv: LiveServer, **kwargs: Any) -> int:
    headers = kwargs.pop("headers", None)
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            srv.url(**kwargs), additional_headers=headers, open_timeout=5
        ):
            pass
    return info.value.response.status_code


async def welcome_of(ws: Any) -> dict[str, Any]:
    client = Client(ws)
    return await client.expect("welcome")


@pytest.mark.parametrize(
    "source", ["header", "query", "cookie", "subprotocol"]
)
async def test_every_token_source_identifies_the_user(source: str) -> None:
    async with live(jwt_app()) as srv:
        tok = token()
        url, headers, protocols = srv.url(), {}, None
        if source == "header":
            headers = {"Authorization": f"Bearer {tok}"}
        elif source == "query":
            url = srv.url(token=tok)
        elif source == "cookie":
            headers = {"Cookie": f"chat_token={tok}"}
        else:
            protocols = ["sanic-chat", f"bearer.{tok}"]
        async with connect(
            url, additional_headers=headers, subprotocols=protocols
        ) as ws:
            welcome = await welcome_of(ws)
            assert welcome["user"] == {"id": "u1", "name": "Alice"}
            if source == "subprotocol":
                assert ws.subprotocol == "sanic-chat"  # never the token
            else:
                assert ws.subprotocol is None


@pytest.mark.transports("sanic")  # the authenticator's logic
@pytest.mark.parametrize(
    "bad",
    [
        "not-a-jwt",
        jwt.encode({"sub": "u1", "exp": int(time.time()) - 5}, SECRET),
        jwt.encode(
            {"sub": "u1", "exp": int(time.time()) + 60}, "wrong-key" * 4
        ),
        jwt.encode({"sub": "u1"}, SECRET),  # no exp
        jwt.encode(
            {"sub": "u1", "exp": int(time.time()) + 60}, None, algorithm="none"
        ),
        jwt.encode(
            {
                "sub": "u1",
                "exp": int(time.time()) + 60,
                "nbf": time.time() + 3600,  # not yet, however late it runs
            },
            SECRET,
        ),
    ],
    ids=["garbage", "expired", "forged", "no-exp", "alg-none", "not-yet"],
)
async def test_invalid_tokens_get_401_and_no_socket(bad: str) -> None:
    async with live(jwt_app()) as srv:
        assert await refused(srv, token=bad) == 401
        assert await refused(srv) == 401  # no token at all
        assert srv.chat.connection_count == 0


async def test_audience_issuer_and_leeway() -> None:
    auth = JWTAuthenticator(SECRET, audience="chat", issuer="me", leeway=30)
    async with live(jwt_app(authenticator=auth)) as srv:
        assert await refused(srv, token=token(aud="other", iss="me")) == 401
        assert await refused(srv, token=token(aud="chat", iss="you")) == 401
        late = token(aud="chat", iss="me", exp=int(time.time()) - 10)
        async with connect(srv.url(token=late)) as ws:  # within leeway
            await welcome_of(ws)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_public_key_algorithms(algorithm: str) -> None:
    if algorithm == "RS256":
        private = rsa.generate_private_key(
            public_exponent=65537, key_size=2048
        )
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    auth = JWTAuthenticator(public, algorithms=[algorithm])
    signed = jwt.encode(
        {"sub": "k", "exp": int(time.time()) + 60},
        private,
        algorithm=algorithm,
    )
    async with live(jwt_app(authenticator=auth)) as srv:
        async with connect(srv.url(token=signed)) as ws:
            assert (await welcome_of(ws))["user"]["id"] == "k"
        assert await refused(srv, token=_hs256_with(public)) == 401


def _hs256_with(key: bytes) -> str:
    """A token "signed" with the public key as an HMAC secret: the classic
    algorithm-confusion attack (PyJWT itself refuses to make one).
    """

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": "k", "exp": int(time.time()) + 60}
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(key, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + b64(signature)).decode()


async def test_token_map_verify_function_forbidden_and_anonymous() -> None:
    alice = User("a", "Alice")

    async def verify(tok: str) -> User | None:
        if tok == "banned":
            raise Forbidden("banned")
        return alice if tok == "good" else None

    async with live(
        make_app(authenticator=TokenAuthenticator(verify=verify))
    ) as srv:
        async with connect(srv.url(token="good")) as ws:
            assert (await welcome_of(ws))["user"] == {
                "id": "a",
                "name": "Alice",
            }
        assert await refused(srv, token="banned") == 403
        assert await refused(srv, token="bad") == 401
    static = TokenAuthenticator({"s3cret": alice})
    app = make_app(authenticator=static, allow_anonymous=True)
    async with live(app) as srv:
        async with connect(srv.url(token="s3cret")) as ws:
            assert (await welcome_of(ws))["user"]["id"] == "a"
        async with connect(srv.url()) as ws:  # guests explicitly allowed
            assert (await welcome_of(ws))["user"]["id"].startswith("guest-")


async def test_origins_are_checked_before_the_upgrade() -> None:
    async with live(make_app()) as srv:
        host = f"127.0.0.1:{srv.port}"
        assert (
            await refused(srv, headers={"Origin": "https://evil.example"})
            == 403
        )
        async with connect(srv.url(), origin=f"http://{host}") as ws:  # type: ignore[arg-type]
            await welcome_of(ws)
    async with live(make_app(allowed_origins="https://app.example")) as srv:
        async with connect(srv.url(), origin="https://app.example") as ws:  # type: ignore[arg-type]
            await welcome_of(ws)
        assert (
            await refused(srv, headers={"Origin": "https://evil.example"})
            == 403
        )
    async with live(make_app(allowed_origins="*")) as srv:
        async with connect(srv.url(), origin="https://any.example") as ws:  # type: ignore[arg-type]
            await welcome_of(ws)


async def test_room_hooks_refuse_joins_and_messages() -> None:
    def can_join(user: User, room: str) -> bool:
        return room != "staff"

    async def can_publish(user: User, room: str) -> bool:
        return room != "announcements"

    app = make_app(can_join=can_join, can_publish=can_publish)
    async with live(app) as srv:
        async with srv.client(welcome=False, room=["lobby", "staff"]) as a:
            await a.expect("welcome", rooms=["lobby"])
            await a.expect("error", code="forbidden")
            await a.expect("joined", room="lobby")
            await a.send({"type": "join", "room": "staff"})
            await a.expect("error", code="forbidden")
            await a.send({"type": "join", "room": "announcements"})
            await a.expect("joined", room="announcements")
            async with srv.client(room="announcements") as b:
                await a.send(
                    {"type": "message", "room": "announcements", "text": "x"}
                )
                await a.expect("error", code="forbidden")
                await b.nothing()
            assert await srv.chat.history("announcements") == []


@pytest.mark.slow  # waits for tokens to expire
async def test_an_expired_session_is_closed_unless_refreshed() -> None:
    async with live(jwt_app()) as srv:
        short = token(exp=int(time.time()) + 2)
        async with (
            srv.client(token=short) as stale,
            srv.client(token=short) as kept,
        ):
            await kept.send({"type": "refresh", "token": token()})
            refreshed = await kept.find("refreshed")
            assert refreshed["expires_at"] > time.time() + 30
            await kept.send({"type": "refresh", "token": token(sub="other")})
            await kept.find("error", code="forbidden")
            assert await stale.close_code() == 1008
            await asyncio.sleep(1)
            await kept.send({"type": "ping"})
            await kept.find("pong")


@pytest.mark.transports("sanic")  # Sanic's own access log lines
async def test_query_string_tokens_never_reach_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_token = token(sub="logged")
    caplog.set_level(logging.INFO)
    async with live(jwt_app(), access_log=True) as srv:
        async with srv.client(token=secret_token, room="dev") as client:
            await client.say("hi", room="dev")
        assert await refused(srv, token=secret_token + "x") == 401
        await asyncio.sleep(0.1)
    records = [r for r in caplog.records if r.name.startswith("sanic")]
    assert any("/ws" in str(getattr(r, "request", "")) for r in records), (
        "access log did not record the upgrade"
    )
    for record in records:
        text = record.getMessage() + " " + str(record.__dict__)
        assert secret_token not in text
        assert "REDACTED" in text or "/ws" not in str(
            getattr(record, "request", "")
        )


@pytest.mark.transports("sanic", "sanic-portable")
@pytest.mark.parametrize("access_log", [True, False])
async def test_websocket_access_log_lines_follow_the_setting(
    access_log: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Sanic logs a socket's OPEN and CLOSE (with the redacted URL) when
    # its access log is on; off, the fast path does not build the URL.
    caplog.set_level(logging.INFO)
    secret_token = token(sub="logged")
    async with live(jwt_app(), access_log=access_log) as srv:
        async with srv.client(token=secret_token) as client:
            await client.send({"type": "ping"})
            await client.find("pong")
        await asyncio.sleep(0.1)
    lines = [
        str(getattr(r, "request", ""))
        for r in caplog.records
        if r.name == "sanic.access" and "🔌" in str(getattr(r, "request", ""))
    ]
    if access_log:
        assert len(lines) == 2, lines  # OPEN, then CLOSE
        assert all("/ws?" in line and "REDACTED" in line for line in lines)
        assert not any(secret_token in line for line in lines)
    else:
        assert lines == []


async def test_the_apps_own_handlers_get_the_same_identity() -> None:
    from sanic.response import json as json_response

    import sanic_chat

    app = jwt_app()

    @app.get("/me")
    async def me(request: Request) -> Any:
        user = await sanic_chat.get_chat(request).identify(request)
        return json_response(user.public() if user else None)

    async with live(app) as srv:
        url = f"http://127.0.0.1:{srv.port}/me?token={token()}"
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url).read()
        )
        assert json.loads(body) == {"id": "u1", "name": "Alice"}


async def test_malformed_origins_and_plain_http_are_refused_cleanly() -> None:
    async with live(make_app()) as srv:
        for origin in ("http://[", "null", "http://[abc]"):
            assert await refused(srv, headers={"Origin": origin}) == 403
        status, body = await asyncio.to_thread(_plain_get, srv.port)
        assert status == 426 and json.loads(body)["error"]["code"] == (
            "upgrade_required"
        )


def _plain_get(port: int) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ws") as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def test_a_refresh_that_loses_a_claim_leaves_the_rooms_it_granted() -> (
    None
):
    """can_join is asked again on refresh: lost rights end membership."""
    app = jwt_app(
        can_join=lambda user, room: (
            room != "staff" or bool(user.claims.get("staff"))
        )
    )
    async with live(app) as srv:
        async with (
            srv.client(token=token(staff=True), room="staff") as ann,
            srv.client(token=token(sub="u2", staff=True), room="staff") as bo,
        ):
            await ann.send({"type": "join", "room": "lobby"})
            await ann.find("joined", room="lobby")
            await ann.send({"type": "refresh", "token": token()})
            left = await ann.find("left", room="staff")
            assert left["reason"] == "forbidden"
            assert left["user"]["id"] == "u1"
            await ann.find("refreshed")
            # No longer receiving, posting or reading the room.
            await bo.say("staff only", room="staff")
            await ann.send({"type": "history", "room": "staff"})
            await ann.find("error", code="not_joined")
            await ann.send(
                {"type": "message", "room": "staff", "text": "still here?"}
            )
            await ann.find("error", code="not_joined")
            frames = await ann.drain(0.3)
            assert all(f.get("room") != "staff" for f in frames), frames
            await ann.say("lobby is fine", room="lobby")
            # Rejoining needs the claim again.
            await ann.send({"type": "join", "room": "staff"})
            await ann.find("error", code="forbidden")


async def test_frames_never_reach_the_logs_even_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """websockets logs every frame at DEBUG; a refresh frame has a token."""
    caplog.set_level(logging.DEBUG)
    fresh = token(sub="u1", refreshed=True)
    async with live(jwt_app()) as srv, srv.client(token=token()) as ann:
        await ann.send({"type": "refresh", "token": fresh})
        await ann.find("refreshed")
        await ann.say("a private thought")
    server = [r for r in caplog.records if r.name.startswith("sanic")]
    assert server  # DEBUG records of the server were captured
    for record in server:
        text = record.getMessage()
        assert fresh not in text and "private thought" not in text


# Why a token was refused: the 401 body's reason and one INFO line ------

AUD_ISS = {"aud": "chat", "iss": "me"}


def reasoned_token(case: str) -> str | None:
    """A token refused for the reason ``case`` (built when the test runs)."""
    now = int(time.time())
    good = {"sub": "u1", "exp": now + 60, **AUD_ISS}
    tokens: dict[str, Any] = {
        "missing": None,
        "expired": jwt.encode({**good, "exp": now - 5}, SECRET),
        "wrong_audience": jwt.encode({**good, "aud": "other"}, SECRET),
        "wrong_issuer": jwt.encode({**good, "iss": "you"}, SECRET),
        "bad_signature": jwt.encode(good, "wrong-key" * 4),
        "malformed": "not-a-jwt",
        "no_exp": jwt.encode({"sub": "u1", **AUD_ISS}, SECRET),
        "alg_none": jwt.encode(good, None, algorithm="none"),
        "not_yet_valid": jwt.encode({**good, "nbf": now + 3600}, SECRET),
    }
    return tokens[case]


REASON_OF = {"no_exp": "malformed", "alg_none": "bad_signature"}
UNAUTHORIZED_CASES = [
    "missing",
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "bad_signature",
    "malformed",
    "no_exp",
    "alg_none",
    "not_yet_valid",
]


def auth_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sanic_chat.auth"]


def assert_logged_once(
    caplog: pytest.LogCaptureFixture, reason: str, secret: str | None
) -> None:
    lines = auth_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    line = lines[0]
    assert line.levelno == logging.INFO
    assert reason in line.getMessage() and "127.0.0.1" in line.getMessage()
    assert (line.chat_reason, line.chat_peer) == (reason, "127.0.0.1")  # type: ignore[attr-defined]
    if secret:
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in str(record.__dict__)


async def refused_body(srv: LiveServer, **query: Any) -> tuple[int, Any]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.url(**query), open_timeout=5):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


@pytest.mark.parametrize("case", UNAUTHORIZED_CASES)
async def test_a_refused_upgrade_says_why_and_logs_it_once(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    reason = REASON_OF.get(case, case)
    auth = JWTAuthenticator(SECRET, audience="chat", issuer="me")
    async with live(jwt_app(authenticator=auth)) as srv:
        bad = reasoned_token(case)
        status, body = await refused_body(
            srv, **({"token": bad} if bad else {})
        )
        assert status == 401
        error = body["error"]
        assert (error["code"], error["reason"]) == ("unauthorized", reason)
        assert error["message"] and (
            bad is None or bad not in error["message"]
        )
        assert srv.chat.connection_count == 0
    assert_logged_once(caplog, reason, bad)


@pytest.mark.parametrize("case", UNAUTHORIZED_CASES)
async def test_a_refused_api_request_says_why_and_logs_it_once(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    reason = REASON_OF.get(case, case)
    auth = JWTAuthenticator(SECRET, audience="chat", issuer="me")
    async with live(jwt_app(authenticator=auth)) as srv:
        bad = reasoned_token(case)
        headers = {"Authorization": f"Bearer {bad}"} if bad else {}
        status, body = await asyncio.to_thread(
            _http_get, srv.port, "/api/rooms", headers
        )
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["reason"] == reason
    assert_logged_once(caplog, reason, bad)


async def test_a_wrong_api_key_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    async with live(jwt_app(api_key="the-real-key-0123")) as srv:
        status, body = await asyncio.to_thread(
            _http_get, srv.port, "/api/rooms", {"X-API-Key": "guessed-key-9"}
        )
    assert status == 401
    assert body["error"]["reason"] == "invalid_api_key"
    assert_logged_once(caplog, "invalid_api_key", "guessed-key-9")


async def test_token_and_own_authenticators_give_their_reasons(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    alice = User("a", "Alice")
    static = TokenAuthenticator({"s3cret-token": alice})
    async with live(make_app(authenticator=static)) as srv:
        assert (await refused_body(srv))[1]["error"]["reason"] == "missing"
        _, body = await refused_body(srv, token="guessed-token")
        assert body["error"]["reason"] == "unknown_token"

    async def own(request: Request) -> User | None:  # the old contract
        return None

    async with live(make_app(authenticator=own)) as srv:
        assert (await refused_body(srv))[1]["error"]["reason"] == "missing"
        _, body = await refused_body(srv, token="whatever-token")
        assert body["error"]["reason"] == "rejected"
    reasons = [r.chat_reason for r in auth_lines(caplog)]  # type: ignore[attr-defined]
    assert reasons == ["missing", "unknown_token", "missing", "rejected"]
    for record in caplog.records:
        for secret in ("guessed-token", "whatever-token"):
            assert secret not in record.getMessage()


async def test_with_guests_allowed_a_refused_token_is_logged_not_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """allow_anonymous: a bad token makes a guest, and says so in the log."""
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    expired = reasoned_token("expired")
    async with live(jwt_app(allow_anonymous=True)) as srv:
        async with connect(srv.url(token=expired)) as ws:
            user = (await welcome_of(ws))["user"]
            assert user["id"].startswith("guest-")
        async with connect(srv.url()) as ws:  # no token: a guest, no line
            await welcome_of(ws)
    lines = auth_lines(caplog)
    assert [r.chat_reason for r in lines] == ["expired"]  # type: ignore[attr-defined]
    assert "guest" in lines[0].getMessage()
    assert expired and expired not in lines[0].getMessage()


def _http_get(
    port: int, path: str, headers: dict[str, str]
) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers=headers
    )
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
