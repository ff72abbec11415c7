"""Message metadata, edit and delete, and the before_publish hook, end to
end on a real server (every backend, every transport).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sanic_chat import Forbidden, User

from .conftest import Client, LiveServer, live, make_app

pytestmark = pytest.mark.usefixtures("backend", "transport")


async def history(client: Client, room: str = "lobby") -> list[Any]:
    await client.send({"type": "history", "room": room})
    frame = await client.find("history", room=room)
    messages: list[Any] = frame["messages"]
    return messages


async def error_for(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    await client.send(frame)
    return await client.find("error")


# ---------------------------------------------------------------- meta


async def test_meta_is_carried_verbatim_in_delivery_history_and_recovery(
    server: LiveServer,
) -> None:
    meta = {"reply_to": "x-1", "mentions": ["u2"], "files": [{"n": "ü"}]}
    zero = await server.chat.publish("lobby", "zero")
    async with server.client() as alice, server.client() as bob:
        await alice.send(
            {"type": "message", "room": "lobby", "text": "re", "meta": meta}
        )
        for client in (alice, bob):
            message = await client.find("message", text="re")
            assert message["meta"] == meta
        plain = await alice.say("no meta")
        assert "meta" not in plain
        stored = await history(bob)
        assert stored[-2]["meta"] == meta and "meta" not in stored[-1]
    async with server.client(welcome=False, room=f"lobby@{zero}") as carol:
        await carol.find("joined", room="lobby", recovered=True)
        replay = [await carol.find("message") for _ in range(2)]
        assert replay[0]["meta"] == meta and replay[1]["text"] == "no meta"


HOSTILE_META: list[tuple[object, str]] = [
    ([1, 2], "bad_request"),
    ("reply", "bad_request"),
    (7, "bad_request"),
    (True, "bad_request"),
    ({"big": "x" * 2100}, "too_large"),
    ({"deep": [[[[["x" * 500] * 5]]]]}, "too_large"),
]


async def test_hostile_meta_is_refused_with_the_ref(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        for i, (meta, code) in enumerate(HOSTILE_META):
            error = await error_for(
                alice,
                {"type": "message", "room": "lobby", "text": "t",
                 "meta": meta, "ref": f"m{i}"},
            )  # fmt: skip
            assert error["code"] == code and error["ref"] == f"m{i}", meta
        await alice.nothing()


async def test_meta_with_nan_or_a_lone_surrogate_is_refused(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        for raw in ('{"x": NaN}', '{"x": "\\ud800"}', '{"x": Infinity}'):
            await alice.send(
                '{"type":"message","room":"lobby","text":"t","meta":'
                + raw
                + "}"
            )
            error = await alice.find("error")
            assert error["code"] == "bad_request", raw


async def test_meta_of_exactly_2_kb_passes(server: LiveServer) -> None:
    meta = {"k": "x" * (2048 - len('{"k":""}'))}
    async with server.client() as alice:
        await alice.send(
            {"type": "message", "room": "lobby", "text": "t", "meta": meta}
        )
        assert (await alice.find("message"))["meta"] == meta


# ---------------------------------------------------------------- edit


async def test_the_author_edits_and_everyone_sees_it_and_history_folds_it(
    server: LiveServer,
) -> None:
    async with server.client() as alice, server.client() as bob:
        original = await alice.say("helo")
        await bob.find("message", text="helo")
        await alice.send(
            {"type": "edit", "room": "lobby", "id": original["id"],
             "text": "hello", "ref": "e1"}
        )  # fmt: skip
        ack = await alice.find("ack")
        assert ack == {
            "type": "ack", "ref": "e1", "id": original["id"], "room": "lobby"
        }  # fmt: skip
        for client in (alice, bob):
            edited = await client.find("edited")
            assert set(edited) == {
                "type", "room", "id", "text", "user", "edited_ts"
            }  # fmt: skip
            assert edited["id"] == original["id"]
            assert edited["text"] == "hello"
            assert edited["user"] == alice.user
            assert edited["edited_ts"] >= original["ts"]
        after = await alice.say("next")
        stored = await history(bob)
        assert [m["id"] for m in stored] == [original["id"], after["id"]]
        assert stored[0] == {**original, "text": "hello",
                             "edited_ts": edited["edited_ts"]}  # fmt: skip


async def test_the_author_deletes_and_history_keeps_a_tombstone(
    server: LiveServer,
) -> None:
    async with server.client() as alice, server.client() as bob:
        original = await alice.say("oops")
        await alice.send(
            {"type": "delete", "room": "lobby", "id": original["id"],
             "ref": "d1"}
        )  # fmt: skip
        assert (await alice.find("ack"))["ref"] == "d1"
        deleted = await bob.find("deleted")
        assert deleted["id"] == original["id"]
        assert deleted["room"] == "lobby" and deleted["user"] == alice.user
        stored = await history(bob)
        assert stored == [
            {"id": original["id"], "type": "message", "room": "lobby",
             "user": alice.user, "ts": original["ts"], "deleted": True}
        ]  # fmt: skip
        error = await error_for(
            alice,
            {"type": "edit", "room": "lobby", "id": original["id"],
             "text": "back"},
        )  # fmt: skip
        assert error["code"] == "not_found"


async def test_others_messages_are_forbidden_without_can_moderate(
    server: LiveServer,
) -> None:
    async with server.client() as alice, server.client() as mallory:
        original = await alice.say("mine")
        for request in (
            {"type": "edit", "room": "lobby", "id": original["id"],
             "text": "pwned", "ref": "x"},
            {"type": "delete", "room": "lobby", "id": original["id"],
             "ref": "x"},
        ):  # fmt: skip
            error = await error_for(mallory, request)
            assert error["code"] == "forbidden" and error["ref"] == "x"
        stored = await history(alice)
        assert stored[0]["text"] == "mine" and "edited_ts" not in stored[0]


async def test_a_moderator_edits_and_deletes_others_messages() -> None:
    async def can_moderate(user: User, room: str) -> bool:
        await asyncio.sleep(0)
        return user.name == "mod" and room == "lobby"

    async with (
        live(make_app(can_moderate=can_moderate)) as srv,
        srv.client(name="alice") as alice,
        srv.client(name="mod") as mod,
    ):
        one, two = await alice.say("one"), await alice.say("two")
        await mod.send(
            {"type": "edit", "room": "lobby", "id": one["id"],
             "text": "[edited by a moderator]"}
        )  # fmt: skip
        edited = await alice.find("edited")
        assert edited["user"] == mod.user
        await mod.send({"type": "delete", "room": "lobby", "id": two["id"]})
        assert (await alice.find("deleted"))["user"] == mod.user
        stored = await history(alice)
        assert stored[0]["text"] == "[edited by a moderator]"
        assert stored[0]["user"] == alice.user  # still the author's
        assert stored[1]["deleted"] is True and "text" not in stored[1]


HOSTILE_EDITS: list[tuple[dict[str, Any], str]] = [
        ({"type": "edit", "room": "lobby", "id": "nope", "text": "t"},
         "not_found"),
        ({"type": "delete", "room": "lobby", "id": "0-0"}, "not_found"),
        ({"type": "edit", "room": "lobby", "id": 5, "text": "t"},
         "bad_request"),
        ({"type": "edit", "room": "lobby", "id": None, "text": "t"},
         "bad_request"),
        ({"type": "delete", "room": "lobby", "id": ["a"]}, "bad_request"),
        ({"type": "delete", "room": "lobby", "id": "x" * 129},
         "bad_request"),
        ({"type": "edit", "room": "lobby", "id": "x", "text": 3},
         "bad_request"),
        ({"type": "edit", "room": "lobby", "id": "x", "text": "  "},
         "bad_request"),
        ({"type": "edit", "room": "lobby", "id": "x", "text": "x" * 4001},
         "too_large"),
        ({"type": "edit", "room": "elsewhere", "id": "x", "text": "t"},
         "not_joined"),
        ({"type": "delete", "room": "bad room!", "id": "x"}, "bad_request"),
]  # fmt: skip


async def test_hostile_edits_and_deletes_are_refused(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        await alice.say("there is history")
        for i, (frame, code) in enumerate(HOSTILE_EDITS):
            error = await error_for(alice, {**frame, "ref": f"r{i}"})
            assert error["code"] == code, (frame, error)
            assert error["ref"] == f"r{i}", (frame, error)
        await alice.nothing()


async def test_a_client_offline_during_edit_and_delete_recovers_them(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        async with server.client() as bob:
            seen = await bob.find(
                "message", text=(await alice.say("seen"))["text"]
            )
        later = await alice.say("later")
        gone = await alice.say("gone")
        for frame in (
            {"type": "edit", "room": "lobby", "id": seen["id"],
             "text": "seen, edited"},
            {"type": "delete", "room": "lobby", "id": gone["id"]},
            {"type": "edit", "room": "lobby", "id": later["id"],
             "text": "later, edited"},
        ):  # fmt: skip
            await alice.send(frame)
            await alice.find(DONE[frame["type"]])
        async with server.client(room=f"lobby@{seen['id']}") as bob:
            # The five expected frames as they come, then nothing more.
            frames = [await bob.recv() for _ in range(5)]
            frames += await bob.drain(0.2)
        kinds = [(f["type"], f.get("text"), f.get("deleted")) for f in frames]
        # The messages after ``since`` come as they are now (the deleted
        # text is not sent); every edit and delete follows, in order.
        assert kinds == [
            ("message", "later, edited", None),
            ("message", None, True),
            ("edited", "seen, edited", None),
            ("deleted", None, None),
            ("edited", "later, edited", None),
        ], frames


DONE = {"edit": "edited", "delete": "deleted"}


# ------------------------------------------------------- before_publish


async def test_before_publish_changes_and_refuses_messages_and_edits() -> None:
    seen: list[tuple[str, str, str, Any]] = []

    def before_publish(
        user: User, room: str, text: str, meta: dict[str, Any] | None
    ) -> str | None:
        seen.append((user.name, room, text, meta))
        if "spam" in text:
            raise Forbidden("no spam here")
        if "darn" in text:
            return text.replace("darn", "d**n")
        return None

    async with (
        live(make_app(before_publish=before_publish)) as srv,
        srv.client(name="alice") as alice,
    ):
        await alice.send(
            {"type": "message", "room": "lobby", "text": "darn it",
             "meta": {"m": 1}}
        )  # fmt: skip
        message = await alice.find("message")
        assert message["text"] == "d**n it"
        assert seen[-1] == ("alice", "lobby", "darn it", {"m": 1})
        error = await error_for(
            alice,
            {"type": "message", "room": "lobby", "text": "buy spam",
             "ref": "s"},
        )  # fmt: skip
        assert error == {
            "type": "error", "code": "forbidden", "message": "no spam here",
            "ref": "s", "room": "lobby",
        }  # fmt: skip
        await alice.send(
            {"type": "edit", "room": "lobby", "id": message["id"],
             "text": "darn again"}
        )  # fmt: skip
        assert (await alice.find("edited"))["text"] == "d**n again"
        assert seen[-1][3] == {"m": 1}  # the message's meta
        error = await error_for(
            alice,
            {"type": "edit", "room": "lobby", "id": message["id"],
             "text": "spam"},
        )  # fmt: skip
        assert error["code"] == "forbidden"
        # Server code goes through it too.
        assert await srv.chat.publish("lobby", "darn") is not None
        assert (await alice.find("message"))["text"] == "d**n"
        with pytest.raises(Forbidden, match="no spam"):
            await srv.chat.publish("lobby", "spam")
        await alice.nothing()


async def test_an_async_before_publish_that_empties_the_text_refuses() -> None:
    async def before_publish(
        user: User, room: str, text: str, meta: object
    ) -> str:
        await asyncio.sleep(0)
        return text.replace("bad", "").strip()

    async with (
        live(make_app(before_publish=before_publish)) as srv,
        srv.client() as alice,
    ):
        error = await error_for(
            alice, {"type": "message", "room": "lobby", "text": "bad"}
        )
        assert error["code"] == "bad_request"
        assert (await alice.say("good"))["text"] == "good"


@pytest.mark.logs_errors
async def test_a_before_publish_that_crashes_is_an_internal_error() -> None:
    def before_publish(user: User, room: str, text: str, meta: object) -> int:
        return 42

    async with (
        live(make_app(before_publish=before_publish)) as srv,
        srv.client() as alice,
    ):
        error = await error_for(
            alice, {"type": "message", "room": "lobby", "text": "x"}
        )
        assert error["code"] == "internal_error"


async def test_error_frames_without_ref_are_unchanged(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        await alice.send({"type": "message", "room": "nope", "text": "x"})
        raw = await asyncio.wait_for(alice.ws.recv(), 5)
        assert json.loads(raw) == {
            "type": "error", "code": "not_joined",
            "message": "join room 'nope' first", "room": "nope",
        }  # fmt: skip
        # Neither ref nor room: the frame's bytes are those of before.
        await alice.send({"type": "dance"})
        raw = await asyncio.wait_for(alice.ws.recv(), 5)
        assert raw == (
            '{"type":"error","code":"bad_request",'
            '"message":"unknown frame type \'dance\'"}'
        )


@pytest.mark.slow  # about 4 s: it reads history until the limit bites
async def test_edits_of_unknown_ids_pay_for_the_history_they_read() -> None:
    """An edit or delete reads the room's whole history to find its id.

    Answered with a small ``not_found``, it cost one token: 100 messages
    of 4,000 emoji read from Redis for each (5 ms, 30 times a ping).
    """
    async with live(make_app()) as srv:
        for _ in range(100):
            await srv.chat.publish("lobby", "\U0001f600" * 4000)
        async with srv.client() as mallory:
            await check_paid(mallory)


async def check_paid(mallory: Client) -> None:
    for n, kind in enumerate(("edit", "delete", "history")):
        await mallory.send(
            {"type": kind, "room": "lobby", "id": "0-1", "text": "x",
             "before": "0-1", "ref": f"e{n}"}
        )  # fmt: skip
        error = await mallory.expect("error")
        assert error["code"] == "not_found"
    # Three reads of about 1.6 MB, 25 tokens each, at 10 a second:
    # the reader waits before it takes the ping.
    await mallory.send({"type": "ping"})
    await mallory.nothing(1.0)
