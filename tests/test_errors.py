"""Bad input gets a clear error frame or close code, never a crash."""

from __future__ import annotations

import json

import pytest

from .conftest import LiveServer

# The whole protocol suite runs against every built-in backend.
pytestmark = pytest.mark.usefixtures("backend")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_request"),
        ("{}", "bad_request"),
        ('{"type": 3}', "bad_request"),
        ('{"type": "dance"}', "bad_request"),
        ('{"type": "message", "room": "lobby"}', "bad_request"),
        ('{"type": "message", "room": "lobby", "text": 5}', "bad_request"),
        ('{"type": "message", "room": "lobby", "text": "  "}', "bad_request"),
        ('{"type": "message", "room": "../x", "text": "a"}', "bad_request"),
        ('{"type": "message", "room": "a*", "text": "a"}', "bad_request"),
        ('{"type": "message", "room": ["lobby"], "text": "a"}', "bad_request"),
        (
            '{"type": "message", "room": "lobby", "text": "a", "ref": 1}',
            "bad_request",
        ),
        ('{"type": "join", "room": "x", "since": 12}', "bad_request"),
        ('{"type": "history", "room": "lobby", "limit": -1}', "bad_request"),
        ('{"type": "history", "room": "lobby", "limit": true}', "bad_request"),
        ('{"type": "history", "room": "lobby", "limit": "9"}', "bad_request"),
        ('{"type": "leave", "room": "never-joined"}', "not_joined"),
        ('{"type": "history", "room": "never-joined"}', "not_joined"),
        (
            '{"type": "message", "room": "never-joined", "text": "a"}',
            "not_joined",
        ),
        ("[" * 100_000 + "]" * 100_000, "too_large"),
        (
            "{" + '"a":' * 1 + "[" * 100_000 + "]" * 100_000 + "}",
            "bad_request",
        ),
        ('{"type": "ping", "n": ' + "9" * 5000 + "}", "bad_request"),
        (
            '{"type": "message", "room": "lobby", "text": "x\\ud800"}',
            "bad_request",
        ),
        (
            '{"type": "message", "room": "lobby", "text": "x", "ref": "\\udfff"}',
            "bad_request",
        ),
        (
            '{"type": "join", "room": "lobby", "since": "\\ud800"}',
            "bad_request",
        ),
    ],
)
async def test_malformed_frames_get_an_error_and_the_connection_stays(
    server: LiveServer, frame: str, code: str
) -> None:
    async with server.client() as alice:
        await alice.send(frame)
        error = await alice.expect("error", code=code)
        assert isinstance(error["message"], str) and error["message"]
        assert "Traceback" not in error["message"]
        await alice.say("still here")


async def test_json_that_is_not_an_object_is_plain_text_only_without_brace(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        await alice.send('["an", "array"]')
        message = await alice.expect("message")
        assert message["text"] == '["an", "array"]'


async def test_binary_frames_are_refused(server: LiveServer) -> None:
    async with server.client() as alice:
        await alice.ws.send(b"\x00\x01binary")
        await alice.expect("error", code="bad_request")
        await alice.say("still here")


async def test_text_over_the_limit_is_too_large(app_factory) -> None:
    from .conftest import live

    async with live(app_factory(max_text_length=10)) as srv:
        async with srv.client() as alice:
            await alice.send(
                {"type": "message", "room": "lobby", "text": "x" * 11}
            )
            await alice.expect("error", code="too_large")
            await alice.send("y" * 11)
            await alice.expect("error", code="too_large")
            await alice.say("x" * 10)


async def test_html_and_control_characters_are_delivered_verbatim(
    server: LiveServer,
) -> None:
    text = '<img src=x onerror="alert(1)"> \x01\t"quoted" \u2028 ✓'
    async with server.client() as alice:
        message = await alice.say(text)
        assert message["text"] == text


async def test_oversized_frame_closes_with_1009(app_factory) -> None:
    from .conftest import live

    app = app_factory()
    app.config.WEBSOCKET_MAX_SIZE = 16 * 1024
    async with live(app) as srv:
        async with srv.client() as big, srv.client() as other:
            await big.send(json.dumps({"type": "ping", "pad": "x" * 20_000}))
            assert await big.close_code() == 1009
            await other.say("unaffected")


async def test_invalid_utf8_closes_with_1007_and_others_are_unaffected(
    server: LiveServer,
) -> None:
    async with server.client() as bad, server.client() as other:
        await bad.ws.send(b'{"type":"ping","x":"\xff"}', text=True)
        assert await bad.close_code() == 1007
        await other.say("unaffected")


async def test_lone_surrogates_never_reach_other_members(
    server: LiveServer,
) -> None:
    async with server.client() as attacker, server.client() as victim:
        await attacker.expect("joined", user=victim.user)
        await attacker.send(
            '{"type":"message","room":"lobby","text":"\\ud800"}'
        )
        await attacker.expect("error", code="bad_request")
        with pytest.raises(ValueError, match="UTF-8"):
            await server.chat.publish("lobby", "x\ud800")
        await attacker.say("after")
        await victim.expect("message", text="after")
        await victim.send({"type": "history", "room": "lobby"})
        history = await victim.expect("history")
        assert [m["text"] for m in history["messages"]] == ["after"]


@pytest.mark.transports("sanic", "sanic-portable")  # ASGI: the server's
@pytest.mark.logs_errors  # the startup warning
async def test_no_frame_limit_in_the_app_still_bounds_the_chats_sockets(
    app_factory, caplog: pytest.LogCaptureFixture
) -> None:
    from sanic_chat._sanic import UNLIMITED_FRAME_FALLBACK

    from .conftest import live

    app = app_factory()
    app.config.WEBSOCKET_MAX_SIZE = None  # the app asks for no limit
    async with live(app) as srv:
        async with srv.client() as big, srv.client() as other:
            pad = "x" * (UNLIMITED_FRAME_FALLBACK + 1)
            await big.send(json.dumps({"type": "ping", "pad": pad}))
            assert await big.close_code() == 1009
            await other.say("unaffected")
        # Under the fallback, a large frame is read (and answered).
        async with srv.client() as fine:
            await fine.send(json.dumps({"type": "ping", "pad": "x" * 100_000}))
            frame = await fine.recv()
            while frame["type"] in ("joined", "left"):  # others' notices
                frame = await fine.recv()
            assert frame["type"] == "pong", frame
    assert "WEBSOCKET_MAX_SIZE is None" in caplog.text
