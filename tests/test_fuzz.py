"""Property: whatever a client sends, the server stays up and correct.

Hypothesis generates arbitrary frames (protocol-shaped JSON with wrong
types, unknown fields and hostile room names, plain text, binary) sent by
a hostile client against a live server, while a well-behaved client in
the same room talks. Invariants: every reply is a well-formed protocol
frame, nobody else is disturbed (the well-behaved client gets every one
of its messages, in order), nothing is logged as an error, and the server
still serves new clients afterwards.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from .conftest import UNLIMITED, live, make_app

SERVER_TYPES = {
    "welcome", "joined", "left", "message", "ack", "history", "presence",
    "pong", "error", "lagged", "resync", "refreshed", "typing", "read",
    "receipts",
}  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
rooms = st.sampled_from(["lobby", "dev", "../x", "*", "a?b", "[x]", ""]) | (
    st.text(max_size=70)
)
protocol_shaped = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "message",
                "join",
                "leave",
                "history",
                "presence",
                "ping",
                "refresh",
                "welcome",
                "typing",
                "read",
                "receipts",
                "nope",
            ]
        )
        | st.text(max_size=8)
        | json_values,
    },
    optional={
        "room": rooms | json_values,
        "text": st.text(max_size=60) | json_values,
        "since": st.text(max_size=30) | json_values,
        "limit": st.integers(-5, 500) | json_values,
        "ref": st.text(max_size=10) | json_values,
        "user": json_values,
        "id": json_values,
        "token": st.text(max_size=10),
        "to": st.sampled_from(["", "guest-x", "@lobby"])
        | st.text(max_size=10)
        | json_values,
    },
).map(json.dumps)
frames = st.one_of(
    protocol_shaped,
    st.text(max_size=80),
    st.binary(max_size=40),
    st.sampled_from(
        [
            '{"type":"message","room":"lobby","text":"\\ud800"}',
            "[" * 5000 + "]" * 5000,
            '{"type":"ping","n":' + "9" * 5000 + "}",
            "{" * 3,
        ]
    ),
)


async def scenario(chaos_frames: list[str | bytes]) -> None:
    async with live(make_app(**UNLIMITED)) as srv:
        async with srv.client() as chaos, srv.client() as good:
            replies: list[dict[str, Any]] = []

            async def read_chaos() -> None:
                try:
                    while True:
                        raw = await chaos.ws.recv()
                        frame = json.loads(raw)
                        assert isinstance(frame, dict), raw
                        assert frame.get("type") in SERVER_TYPES, frame
                        replies.append(frame)
                except ConnectionClosed:
                    return

            reader = asyncio.create_task(read_chaos())
            mine = []
            for i, frame in enumerate(chaos_frames):
                await chaos.ws.send(frame)
                if i % 5 == 0:
                    text = f"good {i}"
                    await good.send(
                        {"type": "message", "room": "lobby", "text": text}
                    )
                    mine.append(text)
            for text in mine:  # in order, none missing
                await good.find("message", text=text, user=good.user)
            await chaos.send({"type": "ping"})
            async with asyncio.timeout(5):
                while not any(r["type"] == "pong" for r in replies[-3:]):
                    if reader.done():
                        break
                    await asyncio.sleep(0.01)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            reader_error = None if reader.cancelled() else reader.exception()
            assert reader_error is None, reader_error
        async with srv.client() as fresh:
            await fresh.say("still serving")


@pytest.mark.slow  # 30 servers, hypothesis
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(frames, min_size=1, max_size=40))
def test_arbitrary_frames_never_break_the_server(
    chaos_frames: list[str | bytes],
) -> None:
    asyncio.run(scenario(chaos_frames))
