"""Declared authenticator contracts: refreshing, and what clients see."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from sanic import Request
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sanic_chat import (
    BadCredentials,
    ChatError,
    GuestAuthenticator,
    JWTAuthenticator,
    RefreshingAuthenticator,
    TokenAuthenticator,
    User,
)

from .conftest import TIMEOUT, LiveServer, live, make_app

SECRET = "test-secret-with-enough-length-for-hs256"


class Raising:
    """An authenticator that raises what it is given, token or not."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def __call__(self, request: Request) -> User | None:
        raise self.exc


class Sessions:
    """A third-party authenticator with ``from_token``, no base class."""

    def __init__(self, tokens: dict[str, User]) -> None:
        self.tokens = tokens

    async def __call__(self, request: Request) -> User | None:
        return self.tokens.get(request.args.get("token", ""))

    async def from_token(self, token: str) -> User | None:
        return self.tokens.get(token)


class NoRefresh:
    async def __call__(self, request: Request) -> User | None:
        return User("u1", "Ann", expires_at=time.time() + 60)


def test_which_authenticators_can_refresh() -> None:
    assert isinstance(JWTAuthenticator(SECRET), RefreshingAuthenticator)
    assert isinstance(TokenAuthenticator({}), RefreshingAuthenticator)
    assert isinstance(Sessions({}), RefreshingAuthenticator)
    assert not isinstance(GuestAuthenticator(), RefreshingAuthenticator)
    assert not isinstance(NoRefresh(), RefreshingAuthenticator)


def test_bad_credentials_is_a_chat_error_and_a_value_error() -> None:
    exc = BadCredentials("token must be hex")
    assert isinstance(exc, ChatError) and isinstance(exc, ValueError)
    assert exc.message == str(exc) == "token must be hex"


async def _upgrade(srv: LiveServer, **query: Any) -> tuple[int, Any]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.url(**query), open_timeout=TIMEOUT):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def _both(srv: LiveServer, token: str) -> list[tuple[int, Any]]:
    """The answers of an upgrade and of an API call carrying ``token``."""
    upgrade = await _upgrade(srv, token=token)
    api = await asyncio.to_thread(
        _get, srv.port, "/api/rooms", {"Authorization": f"Bearer {token}"}
    )
    return [upgrade, api]


def _auth_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sanic_chat.auth"]


async def test_bad_credentials_are_answered_400_with_their_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    app = make_app(authenticator=Raising(BadCredentials("token must be hex")))
    async with live(app) as srv:
        for status, body in await _both(srv, "zz-not-hex"):
            assert status == 400
            assert body["error"] == {
                "code": "bad_request",
                "message": "token must be hex",
            }
        assert srv.chat.connection_count == 0
    assert _auth_records(caplog) == []  # the authenticator's own answer


async def test_a_value_error_is_answered_400_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    leak = ValueError("row 7 of table sessions_secret")
    async with live(make_app(authenticator=Raising(leak))) as srv:
        answers = await _both(srv, "tok-4242-secret")
    for status, body in answers:
        assert status == 400
        assert body["error"] == {
            "code": "bad_request",
            "message": "credentials not accepted",
        }
    records = _auth_records(caplog)
    assert len(records) == 2, records  # once per request
    for record in records:
        assert record.levelno == logging.WARNING
        assert record.exc_info is not None and record.exc_info[1] is leak
        assert "400" in record.getMessage()
        assert "tok-4242-secret" not in record.getMessage()


@pytest.mark.logs_errors  # the authenticator's bug is logged as an error
async def test_any_other_error_is_answered_500_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sanic_chat.auth")
    bug = RuntimeError("cannot reach db at postgres://admin:pw@db")
    async with live(make_app(authenticator=Raising(bug))) as srv:
        answers = await _both(srv, "tok-4242-secret")
    for status, body in answers:
        assert status == 500
        assert body["error"] == {
            "code": "internal_error",
            "message": "authentication failed",
        }
    records = _auth_records(caplog)
    assert [r.levelno for r in records] == [logging.ERROR] * 2
    assert all(r.exc_info and r.exc_info[1] is bug for r in records)
    # Logged here once: Sanic's own error handler never saw it.
    assert not [r for r in caplog.records if "postgres" in r.getMessage()]


async def test_refresh_uses_an_authenticator_that_declares_it() -> None:
    now = time.time()
    sessions = Sessions(
        {
            "first": User("u1", "Ann", expires_at=now + 60),
            "second": User("u1", "Ann", expires_at=now + 3600),
            "bob": User("u2", "Bob", expires_at=now + 3600),
        }
    )
    async with live(make_app(authenticator=sessions)) as srv:
        async with srv.client(token="first") as ann:
            await ann.send({"type": "refresh", "token": "second"})
            refreshed = await ann.find("refreshed")
            assert refreshed["expires_at"] == now + 3600
            await ann.send({"type": "refresh", "token": "bob"})
            await ann.find("error", code="forbidden")


async def test_refresh_without_the_method_is_a_bad_request() -> None:
    async with live(make_app(authenticator=NoRefresh())) as srv:
        async with srv.client() as ann:
            await ann.send({"type": "refresh", "token": "anything"})
            error = await ann.find("error", code="bad_request")
            assert "cannot refresh" in error["message"]
