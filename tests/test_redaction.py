"""``?token=`` never reaches a log line, whoever writes it.

A real server with Sanic's access log on; every route is called with the
token in its query: accepted, refused by sanic-chat, refused by
validation, unknown, malformed. The log records of Sanic's loggers and
sanic-chat's, at DEBUG, must not contain it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from sanic_chat import JWTAuthenticator
from sanic_chat.redaction import TokenRedactingFilter, install, redact

from .conftest import TIMEOUT, live, make_app
from .test_auth import SECRET, refused, token
from .test_upgrade_methods import logged_text, raw_request, watch_logs

KEY = "k-0123456789abcdef"


def redacted_app() -> Any:
    return make_app(authenticator=JWTAuthenticator(SECRET), api_key=KEY)


async def test_no_route_logs_a_query_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_logs(caplog)
    secret = token(sub="logged")
    async with live(redacted_app(), access_log=True) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        # /ws: accepted, refused 401, refused 403 (origin), escaped key
        async with connect(srv.url(token=secret)) as ws:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert await refused(srv, token=secret + "x") == 401
        assert (
            await refused(
                srv, token=secret, headers={"Origin": "https://evil.example"}
            )
            == 403
        )
        async with connect(
            f"ws://127.0.0.1:{srv.port}/ws?%74oken={secret}"
        ) as ws:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        calls = [
            ("GET", "/api/rooms", 200),
            ("GET", "/api/rooms/lobby/history", 200),
            ("GET", "/api/rooms/lobby/history?limit=lots", 400),
            ("GET", "/api/rooms/lobby/history?unknown=1", 400),
            ("GET", "/api/rooms/nobody/presence", 404),
            ("POST", "/api/rooms/lobby/messages", 403),
            ("DELETE", "/api/users/u1/connections", 403),
            ("GET", "/api/health", 200),
            ("GET", "/metrics", 200),
            ("GET", "/api/no-such-route", 404),
            ("PUT", "/api/rooms", 405),
        ]
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            posted = await http.post(
                "/api/rooms/lobby/messages",
                json={"text": "hello"},
                headers={"X-API-Key": KEY},
            )
            assert posted.status_code == 201
            for method, path, status in calls:
                sep = "&" if "?" in path else "?"
                response = await http.request(
                    method,
                    f"{path}{sep}token={secret}",
                    json={"text": "hi"} if method == "POST" else None,
                )
                assert response.status_code == status, (path, response.text)
        # Malformed: a header line without a colon, a bad escape, a URL
        # that is not ASCII, a request line with the token and no version.
        for head in [
            f"GET /api/rooms?token={secret} HTTP/1.1\nHost: x\nbroken\n",
            f"GET /api/rooms?token={secret}&x=%zz HTTP/1.1\nHost: x\n",
            f"GET /api/rooms?token={secret}&\u00e9 HTTP/1.1\nHost: x\n",
            f"GET /ws?token={secret}\nHost: x\n",
        ]:
            answer = await raw_request(srv.port, head)
            assert answer.startswith(b"HTTP/1.1 "), answer
        await asyncio.sleep(0.1)  # the last access log lines
    text = logged_text(caplog)
    assert "token=REDACTED" in text  # the access log was seen
    assert "%74oken=REDACTED" in text
    assert secret not in text


async def test_history_takes_the_token_the_docs_promise() -> None:
    async with live(redacted_app()) as srv:
        url = (
            f"http://127.0.0.1:{srv.port}/api/rooms/lobby/history"
            f"?token={token()}&limit=5"
        )
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            await http.post(
                f"http://127.0.0.1:{srv.port}/api/rooms/lobby/messages",
                json={"text": "hello"},
                headers={"X-API-Key": KEY},
            )
            response = await http.get(url)
            assert response.status_code == 200, response.text
            assert [m["text"] for m in response.json()["messages"]] == [
                "hello"
            ]
            # Validation still refuses what the model does not know.
            response = await http.get(url + "&extra=1")
            assert response.status_code == 400


@pytest.mark.logs_errors
def test_a_logged_traceback_is_redacted_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install()
    install()  # idempotent
    error_log = logging.getLogger("sanic.error")
    assert (
        sum(isinstance(f, TokenRedactingFilter) for f in error_log.filters)
        == 1
    )
    caplog.set_level(logging.DEBUG, logger="sanic.error")
    try:
        raise ValueError("bad url /ws?room=a&token=SECRET1&x=1")
    except ValueError:
        error_log.exception("while handling uri: %r", "/ws?token=SECRET2")
    text = logging.Formatter().format(caplog.records[-1])
    assert "SECRET" not in text
    assert "token=REDACTED&x=1" in text and "ValueError" in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /ws?token=abc", "GET /ws?token=REDACTED"),
        ("'/ws?room=a&token=abc&x=1'", "'/ws?room=a&token=REDACTED&x=1'"),
        ("/ws?t%6Fken=abc", "/ws?t%6Fken=REDACTED"),
        ("/ws?mytoken=abc&token_x=1", "/ws?mytoken=abc&token_x=1"),
        ("no query token=abc", "no query token=abc"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected
