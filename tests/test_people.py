"""Direct messages, typing and read receipts, end to end.

Every test runs on both built-in backends (the ``backend`` fixture);
the two-worker tests share one ``redis-server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from sanic_chat import Forbidden, TokenAuthenticator, User, hub

from .conftest import (
    UNLIMITED,
    Client,
    LiveServer,
    drain_each,
    live,
    make_app,
)

USERS = {
    "ta": User("alice", "Alice"),
    "tb": User("bob", "Bob"),
    "tc": User("carol", "Carol"),
}


def people_app(**options: Any) -> Any:
    options.setdefault("authenticator", TokenAuthenticator(USERS))
    return make_app(**options)


@asynccontextmanager
async def people(**options: Any) -> AsyncIterator[LiveServer]:
    async with live(people_app(**options)) as srv:
        yield srv


async def dm(client: Client, to: str, text: str, **extra: Any) -> None:
    await client.send({"type": "message", "to": to, "text": text, **extra})


async def echo_and_ack(
    client: Client, text: str, ref: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sender's copy and its ack, in whichever order they come."""
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < 2:
        frame = await client.until(
            lambda f: (
                (f["type"] == "message" and f.get("text") == text)
                or (f["type"] == "ack" and f.get("ref") == ref)
            )
        )
        seen[frame["type"]] = frame
    return seen["message"], seen["ack"]


pytestmark = pytest.mark.usefixtures("backend")


async def test_a_dm_reaches_every_connection_of_both_users_only() -> None:
    async with (
        people() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="ta") as alice2,
        srv.client(token="tb") as bob,
        srv.client(token="tc") as carol,
    ):
        assert alice.welcome["inbox"] == "@alice"
        assert bob.welcome["inbox"] == "@bob"
        assert "@alice" not in alice.welcome["rooms"]
        await dm(alice, "bob", "psst", ref="r1")
        mine, ack = await echo_and_ack(alice, "psst", "r1")
        assert mine["room"] == "@alice"
        assert ack == {"type": "ack", "ref": "r1", "id": mine["id"],
                       "room": "@alice"}  # fmt: skip
        assert mine["to"] == "bob" and mine["user"] == alice.user
        assert (await alice2.find("message", text="psst"))["id"] == mine["id"]
        theirs = await bob.find("message", text="psst")
        assert list(theirs) == ["id", "type", "room", "to", "user", "text",
                                "ts"]  # fmt: skip
        assert theirs["room"] == "@bob" and theirs["to"] == "bob"
        assert theirs["user"] == {"id": "alice", "name": "Alice"}
        assert theirs["ts"] == mine["ts"]
        await carol.nothing(notices=False)  # no DM, whoever joined
        # Each inbox's history holds its own copy.
        await bob.send({"type": "history", "room": "@bob"})
        history = await bob.find("history", room="@bob")
        assert [m["id"] for m in history["messages"]] == [theirs["id"]]


async def test_a_dm_to_oneself_is_one_copy() -> None:
    async with people() as srv, srv.client(token="ta") as alice:
        await dm(alice, "alice", "note to self", ref="n")
        message, ack = await echo_and_ack(alice, "note to self", "n")
        assert ack["id"] == message["id"]
        await alice.nothing()


async def test_dms_missed_offline_are_recovered_with_one_join() -> None:
    async with people() as srv:
        async with srv.client(token="tb") as bob:
            await dm(bob, "alice", "first")
            first = await bob.find("message", text="first")
        async with srv.client(token="ta") as alice:
            await alice.send({"type": "history", "room": "@alice"})
            history = await alice.find("history", room="@alice")
            seen = history["messages"][-1]
            assert seen["text"] == "first" and seen["to"] == "alice"
            assert first["room"] == "@bob"
        async with srv.client(token="tb") as bob:
            await dm(bob, "alice", "second")
            await dm(bob, "alice", "third")
            await bob.find("message", text="third")
        async with srv.client(token="ta") as alice:
            await alice.send(
                {"type": "join", "room": "@alice", "since": seen["id"]}
            )
            joined = await alice.find("joined", room="@alice")
            assert joined["recovered"] is True
            texts = [(await alice.expect("message"))["text"] for _ in "ab"]
            assert texts == ["second", "third"]


async def test_meta_on_a_dm_in_delivery_history_and_recovery() -> None:
    meta = {"reply_to": "1-0", "files": [{"url": "https://x.test/a"}]}
    async with people() as srv:
        async with (
            srv.client(token="ta") as alice,
            srv.client(token="tb") as bob,
        ):
            await dm(alice, "bob", "see this", meta=meta, ref="m")
            mine, _ = await echo_and_ack(alice, "see this", "m")
            theirs = await bob.find("message", text="see this")
            assert mine["meta"] == theirs["meta"] == meta
            assert list(theirs)[-1] == "meta"
            await dm(alice, "bob", "plain")
            assert "meta" not in await bob.find("message", text="plain")
            for client, inbox in ((alice, "@alice"), (bob, "@bob")):
                await client.send({"type": "history", "room": inbox})
                history = await client.find("history", room=inbox)
                stored = history["messages"][-2]
                assert stored["text"] == "see this" and stored["meta"] == meta
            await alice.send(
                {"type": "message", "to": "bob", "text": "big", "ref": "b",
                 "meta": {"x": "y" * 2048}}
            )  # fmt: skip
            error = await alice.expect("error", code="too_large")
            assert error["ref"] == "b"
            await bob.nothing(0.1)
            since = theirs["id"]
        # Server code sends meta too; an offline bob recovers it.
        await srv.chat.send_to_user("bob", "by bot", meta={"bot": True})
        async with srv.client(token="tb") as bob:
            await bob.send({"type": "join", "room": "@bob", "since": since})
            await bob.find("joined", room="@bob", recovered=True)
            plain, bot = [await bob.expect("message") for _ in "ab"]
            assert (plain["text"], bot["text"]) == ("plain", "by bot")
            assert "meta" not in plain and bot["meta"] == {"bot": True}
        with pytest.raises(ValueError):
            await srv.chat.send_to_user("bob", "x", meta={"x": "y" * 2048})


async def test_before_publish_changes_and_refuses_dms_on_every_path() -> None:
    import httpx

    seen: list[tuple[str, str, str, Any]] = []

    def before_publish(
        user: User, room: str, text: str, meta: dict[str, Any] | None
    ) -> str | None:
        seen.append((user.id, room, text, meta))
        if "spam" in text:
            raise Forbidden("no spam here")
        return text.replace("darn", "d**n") if "darn" in text else None

    key = {"X-API-Key": "k-dm"}
    async with (
        people(before_publish=before_publish, api_key="k-dm") as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
    ):
        # Changed: both copies and both inboxes' history hold the new text.
        await dm(alice, "bob", "darn it", meta={"m": 1}, ref="c")
        mine, _ = await echo_and_ack(alice, "d**n it", "c")
        assert (await bob.find("message", text="d**n it"))["meta"] == {"m": 1}
        assert seen[-1] == ("alice", "@bob", "darn it", {"m": 1})
        await bob.send({"type": "history", "room": "@bob"})
        history = await bob.find("history", room="@bob")
        assert [m["text"] for m in history["messages"]] == ["d**n it"]
        # Refused: forbidden with the hook's reason and the ref; no copy.
        await dm(alice, "bob", "buy spam", ref="s")
        error = await alice.expect("error", code="forbidden")
        assert error["message"] == "no spam here" and error["ref"] == "s"
        await bob.nothing(0.1)
        # Server code and the HTTP API go through it too.
        await srv.chat.send_to_user("bob", "darn bot")
        assert (await bob.find("message", room="@bob"))["text"] == "d**n bot"
        assert seen[-1][1] == "@bob"
        with pytest.raises(Forbidden, match="no spam"):
            await srv.chat.send_to_user("bob", "spam")
        answer = await http.post(
            "/api/users/bob/messages",
            json={"text": "darn api", "meta": {"via": "api"}},
            headers=key,
        )
        assert answer.status_code == 201, answer.text
        message = await bob.find("message", room="@bob")
        assert message["text"] == "d**n api"
        assert message["meta"] == {"via": "api"}
        answer = await http.post(
            "/api/users/bob/messages", json={"text": "spam"}, headers=key
        )
        assert answer.status_code == 403
        assert answer.json()["error"]["message"] == "no spam here"
        answer = await http.post(
            "/api/users/bob/messages",
            json={"text": "x", "meta": {"x": "y" * 2048}},
            headers=key,
        )
        assert answer.status_code == 413
        await bob.nothing(0.1)
        assert mine["text"] == "d**n it"


async def test_can_message_refuses_with_forbidden_sync_and_async() -> None:
    async def blocks_async(sender: User, to: str) -> bool:
        await asyncio.sleep(0)
        return to != "carol"

    async def check(hook: Any) -> None:
        async with (
            people(can_message=hook) as srv,
            srv.client(token="ta") as alice,
            srv.client(token="tc") as carol,
        ):
            await dm(alice, "carol", "hi", ref="x")
            error = await alice.expect("error", code="forbidden", ref="x")
            assert "message" in error
            await alice.send({"type": "typing", "to": "carol", "ref": "t"})
            await alice.expect("error", code="forbidden", ref="t")
            await carol.nothing(notices=False)
            await dm(alice, "bob", "allowed")
            await alice.find("message", text="allowed")

    # Two servers at once: each waits for carol's silence.
    await asyncio.gather(
        check(lambda sender, to: to != "carol"), check(blocks_async)
    )


HOSTILE_PEOPLE_FRAMES: list[tuple[dict[str, Any], str]] = [
        ({"type": "message", "to": "", "text": "x"}, "bad_request"),
        ({"type": "message", "to": "b" * 129, "text": "x"}, "bad_request"),
        ({"type": "message", "to": 7, "text": "x"}, "bad_request"),
        ({"type": "message", "to": ["bob"], "text": "x"}, "bad_request"),
        ({"type": "message", "to": "bob", "text": ""}, "bad_request"),
        ({"type": "message", "to": "bob", "text": "x" * 4001}, "too_large"),
        ({"type": "message", "to": "bob", "room": "lobby", "text": "x"},
         "bad_request"),
        ({"type": "message", "to": "bob", "text": "x", "ref": 5},
         "bad_request"),
        ({"type": "join", "room": "@bob"}, "forbidden"),
        ({"type": "join", "room": "@bob", "since": "1-0"}, "forbidden"),
        ({"type": "history", "room": "@bob"}, "forbidden"),
        ({"type": "leave", "room": "@alice"}, "forbidden"),
        ({"type": "presence", "room": "@alice"}, "forbidden"),
        ({"type": "message", "room": "@bob", "text": "x"}, "bad_request"),
        ({"type": "message", "room": "@alice", "text": "x"}, "bad_request"),
        ({"type": "typing", "room": "@bob"}, "forbidden"),
        ({"type": "typing", "room": "nowhere"}, "not_joined"),
        ({"type": "typing", "room": "lobby", "to": "bob"}, "bad_request"),
        ({"type": "typing"}, "bad_request"),
        ({"type": "typing", "to": ""}, "bad_request"),
        ({"type": "read", "room": "lobby"}, "bad_request"),
        ({"type": "read", "room": "lobby", "id": 12}, "bad_request"),
        ({"type": "read", "room": "lobby", "id": "nope"}, "not_found"),
        ({"type": "read", "room": "lobby", "id": "x" * 129}, "bad_request"),
        ({"type": "read", "room": "nowhere", "id": "1-0"}, "not_joined"),
        ({"type": "read", "room": "@bob", "id": "1-0"}, "forbidden"),
        ({"type": "receipts", "room": "@bob"}, "forbidden"),
        ({"type": "receipts", "room": "nowhere"}, "not_joined"),
        ({"type": "receipts", "room": 3}, "bad_request"),
]  # fmt: skip


async def test_hostile_people_frames_are_refused() -> None:
    # One connection takes every hostile frame in turn: each gets its own
    # error, nothing reaches anyone else, and the connection still works.
    async with (
        people(**UNLIMITED) as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        for i, (frame, code) in enumerate(HOSTILE_PEOPLE_FRAMES):
            ref = f"h{i}"
            await alice.send(
                {**frame, "ref": ref} if "ref" not in frame else frame
            )
            error = await alice.expect("error", code=code)
            # Every request may carry a ref, echoed in its error.
            if "ref" not in frame:
                assert error["ref"] == ref, (frame, error)
            else:
                assert "ref" not in error, (frame, error)
            await alice.send({"type": "ping"})
            await alice.expect("pong")
        await bob.nothing(0.1)


async def test_read_ids_of_another_room_are_not_found() -> None:
    async with (
        people() as srv,
        srv.client(token="ta", room=["lobby", "dev"]) as alice,
    ):
        elsewhere = await alice.say("in dev", room="dev")
        await alice.send(
            {"type": "read", "room": "lobby", "id": elsewhere["id"],
             "ref": "o"}
        )  # fmt: skip
        await alice.expect("error", code="not_found", ref="o")


async def test_typing_reaches_the_others_at_most_once_per_two_seconds() -> (
    None
):
    async with (
        people(**UNLIMITED) as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        for _ in range(50):  # a flood
            await alice.send({"type": "typing", "room": "lobby"})
        await alice.send({"type": "typing", "room": "lobby", "ref": "t"})
        assert await alice.find("ack", ref="t") == {
            "type": "ack", "ref": "t", "room": "lobby"
        }  # fmt: skip
        frames = await bob.drain(0.5)
        typing = [f for f in frames if f["type"] == "typing"]
        assert typing == [
            {"type": "typing", "room": "lobby", "user": alice.user}
        ]
        # Never echoed to the sender; never stored.
        await alice.send({"type": "history", "room": "lobby"})
        history = await alice.expect("history")
        assert history["messages"] == []


async def test_a_flood_of_typing_to_made_up_users_does_not_silence_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's throttle is bounded; full, it refused every new key.

    Typing to 100,000 made-up ids within 2 s (a few thousand guests)
    dropped every other user's typing on that worker.
    """
    monkeypatch.setattr(hub, "TYPING_KEYS", 50)
    async with (
        people(**UNLIMITED) as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        for n in range(60):
            await alice.send({"type": "typing", "to": f"nobody-{n}"})
        await alice.send({"type": "ping"})
        await alice.expect("pong")
        await bob.send({"type": "typing", "room": "lobby"})
        assert await alice.find("typing") == {
            "type": "typing", "room": "lobby", "user": bob.user
        }  # fmt: skip


async def test_typing_in_a_dm_goes_to_the_recipient_inbox() -> None:
    async with (
        people() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
        srv.client(token="tc") as carol,
    ):
        await alice.send({"type": "typing", "to": "bob"})
        assert await bob.find("typing") == {
            "type": "typing", "room": "@bob", "user": alice.user
        }  # fmt: skip
        for frames in await drain_each(0.3, alice, carol):
            assert not [f for f in frames if f["type"] == "typing"]


async def test_read_marks_move_forward_notify_and_fill_joined() -> None:
    async with (
        people() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        ids = [(await alice.say(f"m{i}"))["id"] for i in range(4)]
        for _ in ids:
            await bob.expect("message")
        await bob.send(
            {"type": "read", "room": "lobby", "id": ids[2], "ref": "r"}
        )
        assert await bob.expect("ack", ref="r") == {
            "type": "ack", "ref": "r", "room": "lobby", "id": ids[2]
        }  # fmt: skip
        assert await alice.expect("read") == {
            "type": "read", "room": "lobby", "user": bob.user, "id": ids[2]
        }  # fmt: skip
        # Backwards: ignored, no notice.
        await bob.send({"type": "read", "room": "lobby", "id": ids[0]})
        await alice.nothing()
        await alice.send({"type": "receipts", "room": "lobby", "ref": "q"})
        assert await alice.expect("receipts") == {
            "type": "receipts", "room": "lobby", "read": {"bob": ids[2]},
            "ref": "q",
        }  # fmt: skip
        await alice.expect("ack", ref="q")
        # A new connection of bob learns where he was.
        async with srv.client(token="tb", welcome=False) as bob2:
            await bob2.expect("welcome")
            joined = await bob2.expect("joined", room="lobby")
            assert list(joined)[-2:] == ["last_read", "unread"]
            assert joined["last_read"] == ids[2] and joined["unread"] == 1
        async with srv.client(token="tc", welcome=False) as carol:
            await carol.expect("welcome")
            joined = await carol.expect("joined", room="lobby")
            assert joined["last_read"] is None and joined["unread"] == 4


async def test_unread_counts_messages_not_edits_and_not_deleted_ones() -> None:
    async with (
        people() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        first = await alice.say("read already")
        await bob.find("message", text="read already")
        await bob.send({"type": "read", "room": "lobby", "id": first["id"]})
        await alice.find("read")
        kept = await alice.say("kept")
        gone = await alice.say("gone")
        for frame, done in (
            ({"type": "edit", "room": "lobby", "id": kept["id"],
              "text": "kept, edited"}, "edited"),
            ({"type": "delete", "room": "lobby", "id": gone["id"]},
             "deleted"),
        ):  # fmt: skip
            await alice.send(frame)
            await alice.find(done)
        # Stored after the mark: two messages, one edit, one delete. Bob
        # has one message to read.
        async with srv.client(token="tb", welcome=False) as bob2:
            joined = await bob2.find("joined", room="lobby")
            assert joined["last_read"] == first["id"], joined
            assert joined["unread"] == 1, joined


async def test_an_inbox_is_read_like_a_room() -> None:
    async with (
        people() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        await dm(alice, "bob", "one")
        message = await bob.find("message", text="one")
        await bob.send({"type": "read", "room": "@bob", "id": message["id"]})
        await bob.send({"type": "receipts", "room": "@bob"})
        assert (await bob.find("receipts"))["read"] == {"bob": message["id"]}
        await bob.send({"type": "join", "room": "@bob"})
        joined = await bob.expect("joined", room="@bob")
        assert joined["last_read"] == message["id"] and joined["unread"] == 0


async def test_inboxes_are_not_listed_as_rooms_and_need_no_room_slot() -> None:
    async with (
        people(max_rooms_per_connection=1) as srv,
        srv.client(token="ta") as alice,
    ):
        assert srv.chat.room_sizes() == {"lobby": 1}
        assert "@alice" in srv.chat.hub.rooms
        await dm(alice, "alice", "still works")
        await alice.find("message", text="still works")
        info = await srv.chat.presence("@alice")
        assert info.count == 0


async def test_send_to_user_from_server_code() -> None:
    async with people() as srv, srv.client(token="tb") as bob:
        message_id = await srv.chat.send_to_user(
            "bob", "from the server", user=User("bot", "Bot")
        )
        message = await bob.find("message", text="from the server")
        assert message["id"] == message_id and message["room"] == "@bob"
        assert message["user"] == {"id": "bot", "name": "Bot"}
        with pytest.raises(ValueError):
            await srv.chat.send_to_user("", "x")
        with pytest.raises(ValueError):
            await srv.chat.send_to_user("bob", " ")
        assert srv.chat.inbox("bob") == "@bob"


async def test_http_api_sends_dms_and_reads_receipts() -> None:
    import httpx

    key = {"X-API-Key": "k-people"}
    async with (
        people(api_key="k-people") as srv,
        srv.client(token="tb") as bob,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
    ):
        answer = await http.post(
            "/api/users/bob/messages", json={"text": "hi bob"}, headers=key
        )
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["room"] == "@bob"
        message = await bob.find("message", text="hi bob")
        assert message["id"] == body["id"] and message["to"] == "bob"
        assert message["user"] == {"id": "system", "name": "System"}
        # System permission only; hostile ids and bodies.
        assert (
            await http.post(
                "/api/users/bob/messages",
                json={"text": "x"},
                headers={"Authorization": "Bearer tb"},
            )
        ).status_code == 403
        for path, payload, status in (
            ("/api/users/bob/messages", {"text": ""}, 400),
            ("/api/users/bob/messages", {"text": "x" * 4001}, 413),
            (f"/api/users/{'u' * 129}/messages", {"text": "x"}, 400),
        ):
            answer = await http.post(path, json=payload, headers=key)
            assert answer.status_code == status, answer.text
        said = await bob.say("mark me")
        await bob.send({"type": "read", "room": "lobby", "id": said["id"]})
        async with asyncio.timeout(5):
            while True:
                answer = await http.get(
                    "/api/rooms/lobby/receipts", headers=key
                )
                if answer.json()["read"]:
                    break
                await asyncio.sleep(0.05)
        assert answer.json() == {"room": "lobby", "read": {"bob": said["id"]}}
        answer = await http.get("/api/rooms/@bob/receipts", headers=key)
        assert answer.status_code == 400
