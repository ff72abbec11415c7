"""The Python client's requests, live member lists and token renewal.

Against real servers (and through Redis, where the backend matters),
with short-lived JWTs minted here; the pure parts (answer matching,
member lists, token expiry) also have unit tests, frame in, frame out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from sanic_chat import JWTAuthenticator, client
from sanic_chat.backoff import Backoff
from sanic_chat.client.answers import Answers
from sanic_chat.client.roster import Roster
from sanic_chat.client.tokens import expires_at, refresh_delay

from .conftest import TIMEOUT, UNLIMITED, live, make_app

SECRET = "client-features-secret-client-features"
ANN = {"id": "ann", "name": "Ann"}
BOB = {"id": "bob", "name": "Bob"}


def token(sub: str = "ann", ttl: float = 3600, key: str = SECRET) -> str:
    claims = {"sub": sub, "name": sub.title(), "exp": int(time.time() + ttl)}
    return jwt.encode(claims, key, algorithm="HS256")


# -- pure parts ---------------------------------------------------------------


def test_the_expiry_of_a_jwt_is_read_without_its_key() -> None:
    signed = token(ttl=100, key="another-key-another-key-another-key!")
    assert expires_at(signed) == pytest.approx(time.time() + 100, abs=2)
    assert expires_at("opaque-token") is None
    assert expires_at("a.b.c") is None
    assert expires_at(None) is None


def test_a_token_is_renewed_a_minute_early_or_at_80_percent() -> None:
    now = 1_000_000.0
    hour = jwt.encode({"exp": int(now) + 3600}, "k" * 32)
    ten = jwt.encode({"exp": int(now) + 10}, "k" * 32)
    gone = jwt.encode({"exp": int(now) - 10}, "k" * 32)
    assert refresh_delay(hour, now) == 3540
    assert refresh_delay(ten, now) == 8
    assert refresh_delay(gone, now) == 0
    assert refresh_delay("opaque", now) is None


def test_answers_go_to_the_oldest_request_of_their_room() -> None:
    answers = Answers()
    answers.sent({"type": "history", "room": "a", "limit": 1})  # own
    answers.sent({"type": "history", "room": "a", "ref": "r1"})
    answers.sent({"type": "history", "room": "b", "ref": "r2"})
    answers.sent({"type": "history", "room": "a", "ref": "r3"})
    answers.refused("r3")
    answers.sent({"type": "message", "room": "a", "ref": "r4"})
    reply = {"type": "history", "room": "a"}
    assert answers.answer({"type": "history", "room": "b"}) == "r2"
    assert [answers.answer(reply) for _ in range(3)] == [None, "r1", None]


def test_answers_that_echo_a_ref_go_to_that_request() -> None:
    answers = Answers()
    answers.sent(
        {"type": "history", "room": "a", "ref": "r1"}
    )  # never answered
    answers.sent({"type": "history", "room": "a", "ref": "r2"})
    answers.sent({"type": "history", "room": "a"})  # own
    own = {"type": "history", "room": "a"}
    assert answers.answer({**own, "ref": "r2"}) == "r2"
    assert answers.answer(own) is None
    assert (
        answers.answer({**own, "ref": "r9"}) == "r9"
    )  # not asked: ignored later


def test_members_follow_presence_joins_and_leaves() -> None:
    roster = Roster()
    events, asks = roster.receive({"type": "joined", "room": "a",
                                   "user": ANN}, mine=True)  # fmt: skip
    assert (events, asks) == ([], [{"type": "presence", "room": "a"}])
    reply = {"type": "presence", "room": "a", "users": [ANN], "count": 1}
    events, _ = roster.receive(reply, mine=False)
    assert [e.users for e in events] == [[ANN]]  # type: ignore[attr-defined]
    events, _ = roster.receive(
        {"type": "joined", "room": "a", "user": BOB}, mine=False
    )
    assert roster.members("a") == [ANN, BOB] and roster.count("a") == 2
    assert len(events) == 1
    # A leave may be one tab of two: asked, once at a time.
    left = {"type": "left", "room": "a", "user": BOB}
    assert roster.receive(left, mine=False)[1] == [
        {"type": "presence", "room": "a"}
    ]
    assert roster.receive(left, mine=False)[1] == []
    events, asks = roster.receive(reply, mine=False)
    assert roster.members("a") == [ANN] and len(events) == 1
    assert asks == [{"type": "presence", "room": "a"}]  # changed meanwhile
    assert roster.receive(reply, mine=False) == ([], [])  # no change


# -- against a real server ---------------------------------------------------


def fast() -> Backoff:
    return Backoff(0.02, 0.2)


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not check():
            await asyncio.sleep(0.02)


async def delivered(chat: client.ChatClient) -> list[Any]:
    """The events the client has delivered so far (none for 0.5 s)."""
    events: list[Any] = []
    while True:
        try:
            events.append(await asyncio.wait_for(anext(chat), 0.5))
        except TimeoutError:
            return events


async def test_history_pages_back_and_raises_typed_errors(
    backend: str,
) -> None:
    async with (
        live(make_app(**UNLIMITED)) as srv,
        client.connect(srv.url(), rooms=["lobby"], name="ann") as chat,
    ):
        ids = [await chat.send("lobby", f"m{i}") for i in range(5)]
        newest = await chat.history("lobby", limit=2)
        assert [m.id for m in newest] == ids[3:]
        assert all(isinstance(m, client.Message) for m in newest)
        older = await chat.history("lobby", limit=10, before=ids[3])
        assert [m.text for m in older] == ["m0", "m1", "m2"]
        # Two at once get their own answers, in the order asked.
        both = await asyncio.gather(
            chat.history("lobby", limit=1), chat.history("lobby", limit=3)
        )
        assert [len(b) for b in both] == [1, 3]
        with pytest.raises(client.NotJoined):
            await chat.history("elsewhere")
        with pytest.raises(client.NotFound):
            await chat.history("lobby", before="no-such-id")
        assert [m.id for m in await chat.history("lobby")] == ids


async def test_edit_delete_read_receipts_and_typing() -> None:
    app = make_app(**UNLIMITED, authenticator=JWTAuthenticator(SECRET))
    async with (
        live(app) as srv,
        client.connect(srv.url(), token=token("ann"), rooms=["dev"]) as ann,
        client.connect(srv.url(), token=token("bob"), rooms=["dev"]) as bob,
    ):
        first = await ann.send("dev", "helo")
        second = await ann.send("dev", "bye")
        await ann.edit("dev", first, "hello")
        await ann.delete("dev", second)
        with pytest.raises(client.Forbidden):
            await bob.edit("dev", first, "mine now")
        with pytest.raises(client.NotFound):
            await ann.edit("dev", "no-such-id", "x")
        now = await bob.history("dev")
        assert [(m.text, m.deleted) for m in now] == [
            ("hello", False), ("", True)
        ]  # fmt: skip
        await bob.mark_read("dev", first)
        assert await ann.receipts("dev") == {"bob": first}
        await ann.typing("dev")
        seen: list[Any] = []
        async with asyncio.timeout(TIMEOUT):
            async for event in bob:
                seen.append(event)
                if isinstance(event, client.Typing):
                    break
        assert event.user == ANN
        assert any(isinstance(e, client.Edited) for e in seen)
        assert any(isinstance(e, client.Deleted) for e in seen)


async def test_members_follow_joins_and_leaves(backend: str) -> None:
    async with (
        live(make_app(**UNLIMITED)) as srv,
        client.connect(srv.url(), rooms=["lobby"], name="ann") as chat,
    ):
        await until(lambda: len(chat.members("lobby")) == 1)
        assert chat.members("lobby") == [chat.user]
        async with srv.client(room=["lobby"], name="bob") as bob:
            await until(lambda: len(chat.members("lobby")) == 2)
            assert bob.user in chat.members("lobby")
        await until(lambda: len(chat.members("lobby")) == 1)
        presences = [e for e in await delivered(chat)
                     if isinstance(e, client.Presence)]  # fmt: skip
        assert [p.count for p in presences] == [1, 2, 1]
        assert presences[1].users == [*chat.members("lobby"), bob.user]
        await chat.leave("lobby")
        await until(lambda: chat.members("lobby") == [])


@pytest.mark.slow  # waits seconds for a real token to expire
async def test_a_short_lived_token_is_refreshed_on_the_same_socket() -> None:
    app = make_app(**UNLIMITED, authenticator=JWTAuthenticator(SECRET))
    asked: list[str] = []

    async def get_token() -> str:
        asked.append(token(ttl=3))
        return asked[-1]

    async with (
        live(app) as srv,
        client.connect(srv.url(), get_token=get_token, backoff=fast()) as chat,
    ):
        # Past the first token's expiry: had it not been refreshed, the
        # server would have closed the socket with 1008 by then.
        async with asyncio.timeout(TIMEOUT * 3):
            while len(asked) < 3:
                await asyncio.sleep(0.05)
        assert chat.connected
        await chat.send("lobby", "still here")
        states = [e.state for e in await delivered(chat)
                  if isinstance(e, client.StateChange)]  # fmt: skip
        assert states == ["connected"]


@pytest.mark.slow  # waits seconds for a real token to expire
async def test_after_a_1008_get_token_is_asked_once_and_reconnects() -> None:
    app = make_app(**UNLIMITED, authenticator=JWTAuthenticator(SECRET))
    # A short token, then a refresh the server refuses (another user),
    # so the socket is closed with 1008; then a good, long one.
    tokens = iter([token(ttl=2), token("mallory"), token(ttl=3600)])
    calls = 0

    def get_token() -> str:
        nonlocal calls
        calls += 1
        return next(tokens)

    async with (
        live(app) as srv,
        client.connect(srv.url(), get_token=get_token, backoff=fast()) as chat,
    ):
        states: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            async for event in chat:
                if isinstance(event, client.StateChange):
                    states.append(event.state)
                    if states[-2:] == ["disconnected", "connected"]:
                        break
        assert calls == 3
        assert await chat.send("lobby", "back")


async def test_a_bad_token_from_get_token_ends_as_unauthorized() -> None:
    app = make_app(**UNLIMITED, authenticator=JWTAuthenticator(SECRET))
    calls = 0

    def get_token() -> str:
        nonlocal calls
        calls += 1
        return token(key="not-the-server-key-not-the-server-key")

    async with live(app) as srv:
        with pytest.raises(client.Unauthorized, match="bad_signature"):
            async with client.connect(
                srv.url(), get_token=get_token, backoff=fast()
            ):
                pass
    assert calls == 2  # the first refusal asked for a fresh one, once


async def test_events_waiting_are_bounded_in_bytes_and_count() -> None:
    from sanic_chat.client.events import Delivery, Message

    def message(i: int, text: str) -> Message:
        frame = {"type": "message", "room": "a", "id": str(i), "text": text}
        return Message(frame, "a", str(i), ANN, text, 0, None, None, False)

    by_bytes = Delivery(limit=100, max_bytes=250)
    for i in range(5):
        by_bytes.put(message(i, "x" * 50))  # about 100 bytes each
    assert by_bytes.bytes <= 250 and by_bytes.dropped == 3
    assert [(await by_bytes.get()).id for _ in range(2)] == ["3", "4"]  # type: ignore[union-attr]
    assert by_bytes.bytes == 0
    by_count = Delivery(limit=2)
    for i in range(3):
        by_count.put(message(i, "y"))
    by_count.put(None)
    assert by_count.dropped == 2
    assert [await by_count.get() for _ in range(3)] == [
        message(2, "y"),
        None,
        None,
    ]
