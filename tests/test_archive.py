"""The on_message hook: its queue (bounded, dropping when full, failures
logged once), and every stored message, edit and delete reaching it from
sockets, server code and the HTTP API.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from sanic_chat import MessageEvent, User
from sanic_chat.archive import Archive
from sanic_chat.metrics import Metrics

from .conftest import UNLIMITED, live, make_app, new_app
from .test_http_api import SYSTEM

TEXT = "hello"
ROOT = Path(__file__).parent.parent


def event(n: int, text: str = TEXT) -> MessageEvent:
    user = {"id": "u", "name": "U"}
    return MessageEvent("message", "lobby", f"{n}", user, n, text)


async def settle(archive: Archive) -> None:
    async with asyncio.timeout(5):
        while archive.pending:
            await asyncio.sleep(0.01)


# ------------------------------------------------------------ the queue


async def test_events_reach_the_hook_in_order_sync_or_async() -> None:
    got: list[str] = []

    async def hook(e: MessageEvent) -> None:
        await asyncio.sleep(0)
        got.append(e.id)

    metrics = Metrics()
    archive = Archive(hook, metrics)
    for n in range(50):
        assert archive.record(event(n))
    await settle(archive)
    assert got == [str(n) for n in range(50)]
    assert metrics.archived == 50
    sync: list[str] = []
    plain = Archive(lambda e: sync.append(e.id), metrics)
    plain.record(event(1))
    await settle(plain)
    assert sync == ["1"]
    await archive.stop()
    await plain.stop()


async def test_a_full_queue_drops_at_once_counts_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    got: list[str] = []

    async def slow(e: MessageEvent) -> None:
        await release.wait()
        got.append(e.id)

    metrics = Metrics()
    archive = Archive(slow, metrics, max_events=3)
    with caplog.at_level(logging.WARNING, "sanic_chat.archive"):
        accepted = [archive.record(event(n)) for n in range(10)]
    # Never waits: the publisher learns at once, the rest is dropped.
    assert accepted == [True] * 3 + [False] * 7
    assert metrics.archive_dropped == 7
    full = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(full) == 1
    release.set()
    await settle(archive)
    assert got == ["0", "1", "2"]
    with caplog.at_level(logging.WARNING, "sanic_chat.archive"):
        assert archive.record(event(11))
    assert any(
        "7 events were dropped" in r.getMessage() for r in caplog.records
    )
    await archive.stop()


async def test_the_queue_is_bounded_in_bytes_too() -> None:
    gate = asyncio.Event()

    async def hook(e: MessageEvent) -> None:
        await gate.wait()

    metrics = Metrics()
    big = "x" * 1000
    archive = Archive(hook, metrics, max_bytes=3 * (512 + sys.getsizeof(big)))
    assert [archive.record(event(n, big)) for n in range(4)] == [
        True, True, True, False
    ]  # fmt: skip
    gate.set()
    await archive.stop()


@pytest.mark.usefixtures("backend")
async def test_direct_messages_reach_on_message_once_per_inbox() -> None:
    got: list[MessageEvent] = []

    async with (
        live(make_app(on_message=got.append)) as srv,
        srv.client(name="alice") as alice,
        srv.client(name="bob") as bob,
    ):
        await alice.send(
            {"type": "message", "to": bob.user["id"], "text": "psst",
             "meta": {"m": 1}, "ref": "d"}
        )  # fmt: skip
        ack = await alice.find("ack", ref="d")
        theirs = await bob.find("message", text="psst")
        await alice.send(
            {"type": "message", "to": alice.user["id"], "text": "note"}
        )
        mine = await alice.find("message", text="note")
        async with asyncio.timeout(5):
            while len(got) < 3:
                await asyncio.sleep(0.01)
    copies = sorted(got[:2], key=lambda e: e.room != theirs["room"])
    assert [(e.room, e.id) for e in copies] == [
        (theirs["room"], theirs["id"]),
        (ack["room"], ack["id"]),
    ]
    for event in copies:
        assert (event.kind, event.text, event.meta) == (
            "message",
            "psst",
            {"m": 1},
        )
        assert event.to == bob.user["id"] and event.user == alice.user
    # To oneself: one copy, one event.
    assert [(e.room, e.id, e.to) for e in got[2:]] == [
        (mine["room"], mine["id"], alice.user["id"])
    ]


@pytest.mark.logs_errors
async def test_failures_are_counted_logged_once_and_do_not_stop_the_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = True
    got: list[str] = []

    def hook(e: MessageEvent) -> None:
        if failing:
            raise RuntimeError("database is down")
        got.append(e.id)

    metrics = Metrics()
    archive = Archive(hook, metrics)
    with caplog.at_level(logging.WARNING, "sanic_chat.archive"):
        for n in range(5):
            archive.record(event(n))
        await settle(archive)
        failing = False
        archive.record(event(5))
        await settle(archive)
    assert metrics.archive_failures == 5 and metrics.archived == 1
    assert got == ["5"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert any("works again after 5" in r.getMessage() for r in caplog.records)
    await archive.stop()


async def test_stop_waits_for_the_queue_then_counts_what_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def slow(e: MessageEvent) -> None:
        await asyncio.sleep(0.05)

    metrics = Metrics()
    archive = Archive(slow, metrics)
    for n in range(3):
        archive.record(event(n))
    await archive.stop(wait=5)
    assert metrics.archived == 3 and metrics.archive_dropped == 0

    async def stuck(e: MessageEvent) -> None:
        await asyncio.Event().wait()

    archive = Archive(stuck, metrics)
    for n in range(3):
        archive.record(event(n))
    with caplog.at_level(logging.WARNING, "sanic_chat.archive"):
        await archive.stop(wait=0.1)
    assert metrics.archive_dropped == 3
    assert any(
        "3 events not archived" in r.getMessage() for r in caplog.records
    )


# -------------------------------------------------------- end to end


@pytest.mark.usefixtures("backend")
async def test_every_stored_message_edit_and_delete_reaches_on_message() -> (
    None
):
    got: list[MessageEvent] = []

    async def on_message(e: MessageEvent) -> None:
        got.append(e)

    async with (
        live(make_app(on_message=on_message, api_key=SYSTEM["X-API-Key"]))
        as srv, srv.client(name="alice") as alice,
    ):  # fmt: skip
        await alice.send(
            {"type": "message", "room": "lobby", "text": "one",
             "meta": {"reply_to": "x"}}
        )  # fmt: skip
        one = await alice.find("message")
        await alice.send(
            {"type": "edit", "room": "lobby", "id": one["id"], "text": "1"}
        )
        edited = await alice.find("edited")
        await alice.send({"type": "delete", "room": "lobby", "id": one["id"]})
        await alice.find("deleted")
        two = await srv.chat.publish("lobby", "two", user=User("bot", "Bot"))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{srv.port}"
        ) as http:
            answer = await http.post(
                "/api/rooms/lobby/messages", json={"text": "three"},
                headers=SYSTEM,
            )  # fmt: skip
        assert answer.status_code == 201
        body = answer.json()
        async with asyncio.timeout(5):
            while len(got) < 5:
                await asyncio.sleep(0.01)
    user = alice.user
    assert [(e.kind, e.id, e.text) for e in got] == [
        ("message", one["id"], "one"),
        ("edited", one["id"], "1"),
        ("deleted", one["id"], None),
        ("message", two, "two"),
        ("message", body["id"], "three"),
    ]
    first, edit, delete = got[:3]
    assert first == MessageEvent(
        "message", "lobby", one["id"], user, one["ts"], "one",
        {"reply_to": "x"}, one["id"],
    )  # fmt: skip
    assert edit.user == user and edit.ts == edited["edited_ts"]
    assert edit.event_id not in ("", one["id"])
    assert delete.text is None and delete.meta is None
    assert got[3].user == {"id": "bot", "name": "Bot"}
    snapshot = srv.chat.metrics_snapshot()
    assert snapshot["archived"] == 5 and snapshot["archive_queued"] == 0


async def test_a_stuck_on_message_queue_holds_meta_as_bytes_not_objects() -> (
    None
):
    """2 KB of ``[{},{},...]`` decode to about 50 KB of Python objects.

    The queue counted a meta as 2 KiB: 6,000 such messages queued for a
    slow hook held some 300 MB of a 16 MiB bound.
    """
    gate = asyncio.Event()
    got: list[MessageEvent] = []

    async def on_message(e: MessageEvent) -> None:
        await gate.wait()
        got.append(e)

    meta = {"a": [{}] * 680}
    app = make_app(on_message=on_message, **UNLIMITED)
    async with live(app) as srv, srv.client() as mallory:
        await mallory.say("warm up")
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(300):
                await mallory.send(
                    {"type": "message", "room": "lobby", "text": f"m{n}",
                     "meta": meta}
                )  # fmt: skip
                await mallory.find("message", text=f"m{n}")
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # Queued as JSON: about 2.6 KB each (was 50 KB each, 15 MB).
        assert grown < 300 * 10_000, grown
        gate.set()
        async with asyncio.timeout(5):
            while len(got) < 301:
                await asyncio.sleep(0.01)
        assert got[-1].meta == meta and got[-1].text == "m299"


@pytest.mark.logs_errors
async def test_a_failing_on_message_never_slows_or_stops_delivery() -> None:
    calls: list[Any] = []

    async def on_message(e: MessageEvent) -> None:
        calls.append(e)
        raise RuntimeError("archive down")

    async with (
        live(make_app(on_message=on_message)) as srv,
        srv.client() as alice,
        srv.client() as bob,
    ):
        for n in range(5):
            await alice.say(f"m{n}")
            await bob.find("message", text=f"m{n}")
        async with asyncio.timeout(5):
            while len(calls) < 5:
                await asyncio.sleep(0.01)
        assert srv.chat.metrics_snapshot()["archive_failures"] == 5


async def test_the_sqlite_example_archives_and_serves_older_pages() -> None:
    text = (ROOT / "docs" / "messages.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)\n```", text, re.S)
               if "sqlite3" in c]  # fmt: skip
    app = new_app()
    namespace: dict[str, Any] = {"app": app, "__name__": "docs_sample"}
    exec(compile(code, "docs/messages.md", "exec"), namespace)
    async with (
        live(app) as srv,
        srv.client() as alice,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
    ):
        ids = []
        for n in range(5):
            await alice.send(
                {"type": "message", "room": "lobby", "text": f"m{n}",
                 "meta": {"n": n}}
            )  # fmt: skip
            ids.append((await alice.find("message", text=f"m{n}"))["id"])
        await alice.send(
            {"type": "edit", "room": "lobby", "id": ids[1], "text": "m1!"}
        )
        await alice.find("edited")
        await alice.send({"type": "delete", "room": "lobby", "id": ids[2]})
        await alice.find("deleted")
        await alice.send({"type": "history", "room": "lobby"})
        history = (await alice.find("history"))["messages"]
        await srv.chat.hub.archive.stop()  # type: ignore[union-attr]
        answer = await http.get(f"/archive/lobby?before={ids[4]}&name=x")
        assert answer.status_code == 200, answer.text
        # The archive's page is what the chat's history says, folded.
        assert answer.json()["messages"] == history[:4]
        everything = await http.get("/archive/lobby?name=x")
        assert everything.json()["messages"] == history
