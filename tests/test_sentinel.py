"""Redis behind Sentinel: the primary dies mid-conversation.

Two example-app processes (one worker each) follow the session's
primary/replica/3-sentinel setup (``redis_sentinel``); a client on each
sends numbered messages with refs and resends a ref until it is
acknowledged, as the protocol asks after ``unavailable``. The primary is
killed (SIGKILL) while they talk, the sentinels promote the replica and
the killed server comes back as a replica (as an operator would bring
it back; with ``wait_replicas=1`` nothing is acknowledged until it does).

Then the difference ``wait_replicas`` makes, provoked for certain: the
replica stops replicating, a message is sent, the primary dies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from .conftest import (
    TIMEOUT,
    Client,
    live,
    make_app,
    remote,
    run_example,
    send_until_acked,
)
from .redis_sentinel import SentinelSetup
from .redis_server import RedisServer, free_port

MESSAGES = 24  # per sender
KILL_AFTER = 6  # acknowledged per sender before the primary dies


@dataclass
class Talker:
    """A client that sends with refs, resends until acked, and recovers.

    One task reads every frame: messages are kept in arrival order, once
    per id (one outage can bring two ``resync``, so two replays); on
    ``resync`` it re-joins with ``since`` the last id it saw, and when
    that id is gone (it was never replicated) it reads the history and
    keeps what follows the last message it still finds there.
    """

    name: str
    client: Client
    seen: list[tuple[str, str]] = field(default_factory=list)
    acks: dict[str, str] = field(default_factory=dict)
    resyncs: int = 0
    answers: dict[str, asyncio.Future[dict[str, Any]]] = field(
        default_factory=dict
    )
    history: asyncio.Future[list[dict[str, Any]]] | None = None

    async def read(self) -> None:
        while True:
            frame = await self.client.recv(timeout=120)
            kind = frame["type"]
            if kind == "message" and frame.get("room") == "lobby":
                self._keep([frame])
            elif kind in ("ack", "error") and frame.get("ref") in self.answers:
                answer = self.answers.pop(frame["ref"])
                if not answer.done():
                    answer.set_result(frame)
            elif kind == "resync":
                self.resyncs += 1
                since = self.seen[-1][0] if self.seen else None
                await self.client.send(
                    {"type": "join", "room": "lobby", "since": since}
                )
            elif kind == "joined" and frame.get("recovered") is False:
                await self.client.send(
                    {"type": "history", "room": "lobby", "limit": 200}
                )
            elif kind == "history":
                self._merge(frame["messages"])

    def _merge(self, stored: list[dict[str, Any]]) -> None:
        ids = [m["id"] for m in stored]
        kept = [i for i, _ in self.seen if i in ids]
        start = ids.index(kept[-1]) + 1 if kept else 0
        self._keep(stored[start:])

    def _keep(self, messages: list[dict[str, Any]]) -> None:
        # Two resyncs in a row replay twice: an id is kept once.
        have = {i for i, _ in self.seen}
        self.seen += [
            (m["id"], m["text"]) for m in messages if m["id"] not in have
        ]

    async def send(self, ref: str) -> str:
        """Send ``ref`` (as its text too) until acknowledged; its id."""
        loop = asyncio.get_running_loop()
        while ref not in self.acks:
            answer = loop.create_future()
            self.answers[ref] = answer
            await self.client.send(
                {"type": "message", "room": "lobby", "ref": ref, "text": ref}
            )
            frame = await asyncio.wait_for(answer, 60)
            if frame["type"] == "ack":
                self.acks[ref] = frame["id"]
            else:
                assert frame["code"] == "unavailable", frame
                await asyncio.sleep(0.2)
        return self.acks[ref]

    async def talk(self, count: int, sent: asyncio.Event) -> None:
        """Send ``count`` messages, each resent until acknowledged."""
        for i in range(count):
            await self.send(f"{self.name}-{i}")
            if i + 1 == KILL_AFTER:
                sent.set()
            await asyncio.sleep(0.05)


def _acked_order(talker: Talker, acked: set[str]) -> list[str]:
    return [i for i, _ in talker.seen if i in acked]


@pytest.fixture
def sentinel_setup(redis_sentinel: SentinelSetup) -> Iterator[SentinelSetup]:
    """The session's setup, healthy again after the test."""
    redis_sentinel.wait_healthy()
    try:
        yield redis_sentinel
    finally:
        redis_sentinel.restore()


@pytest.mark.slow
@pytest.mark.logs_errors  # the workers log the lost primary
@pytest.mark.parametrize("wait_replicas", [1, 0])
async def test_a_failover_mid_conversation_keeps_every_acked_message(
    sentinel_setup: SentinelSetup, tmp_path: Path, wait_replicas: int
) -> None:
    setup = sentinel_setup
    prefix = f"failover{wait_replicas}:"
    env = {
        "SANIC_CHAT_BROADCASTER_URL": setup.url(
            f"prefix={prefix}&heartbeat=0.5&wait_replicas={wait_replicas}"
        ),
        "SANIC_CHAT_RATE_BURST": "1000",
        "SANIC_CHAT_RATE_LIMIT": "1000",
    }
    with (
        run_example(tmp_path / "a.log", "--allow-anonymous", **env) as pa,
        run_example(tmp_path / "b.log", "--allow-anonymous", **env) as pb,
    ):
        async with (
            remote(pa).client(name="alice") as alice_client,
            remote(pb).client(name="bob") as bob_client,
        ):
            await alice_client.find("joined", user=bob_client.user)
            alice = Talker("alice", alice_client)
            bob = Talker("bob", bob_client)
            readers = [
                asyncio.create_task(alice.read()),
                asyncio.create_task(bob.read()),
            ]
            sent = [asyncio.Event(), asyncio.Event()]
            talks = asyncio.gather(
                alice.talk(MESSAGES, sent[0]), bob.talk(MESSAGES, sent[1])
            )
            try:
                await asyncio.wait_for(sent[0].wait(), TIMEOUT * 4)
                await asyncio.wait_for(sent[1].wait(), TIMEOUT * 4)
                old = await asyncio.to_thread(setup.kill_primary)
                await asyncio.to_thread(setup.wait_failover, old.port)
                await asyncio.to_thread(setup.restore)
                await asyncio.wait_for(talks, 180)
                # Everything acknowledged before it has had time to arrive.
                end = await alice.send("end")
                async with asyncio.timeout(TIMEOUT):
                    while not all(end in dict(t.seen) for t in (alice, bob)):
                        await asyncio.sleep(0.05)
            finally:
                talks.cancel()
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(talks, *readers, return_exceptions=True)
            await bob.client.send(
                {"type": "history", "room": "lobby", "limit": 200}
            )
            ended = [
                m["id"] for m in (await bob.client.find("history"))["messages"]
            ]

    acked = set(alice.acks.values()) | set(bob.acks.values())
    assert len(acked) == 2 * MESSAGES + 1, "two acks with one id"
    assert alice.resyncs >= 1 and bob.resyncs >= 1
    orders = [_acked_order(t, acked) for t in (alice, bob)]
    assert orders[0] == orders[1], "clients disagree on the order"
    stored = [i for i in ended if i in acked]
    if wait_replicas:
        # Nothing acknowledged was lost, and none was published twice
        # (under another id) though many were resent.
        assert set(orders[0]) == acked
        assert stored == orders[0]
        for talker in (alice, bob):
            for ref, acked_id in (alice.acks | bob.acks).items():
                ids = {i for i, text in talker.seen if text == ref}
                assert ids == {acked_id}, (talker.name, ref, ids)
    else:
        # Asynchronous replication: what was acknowledged before the
        # kill may be lost; what survived came once, in one order.
        assert stored == [i for i in orders[0] if i in set(stored)]


@pytest.mark.slow
@pytest.mark.logs_errors  # the worker logs the lost primary
@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_what_an_ack_promises_when_replication_lags(
    sentinel_setup: SentinelSetup, wait_replicas: int
) -> None:
    """The replica stops replicating (pointed at a port where nothing
    listens), a message is sent, the primary dies: without
    ``wait_replicas`` its sender had an ``ack`` and it is gone; with it,
    the sender was told ``unavailable``, so nothing acked was lost."""
    setup = sentinel_setup
    prefix = f"lag{wait_replicas}:"
    url = setup.url(
        f"prefix={prefix}&heartbeat=0.5&wait_replicas={wait_replicas}"
        "&wait_timeout=300"
    )
    async with (
        live(make_app(broadcaster=url)) as srv,
        srv.client() as alice,
        srv.client() as bob,
    ):
        kept = await send_until_acked(
            alice,
            {"type": "message", "room": "lobby", "ref": "k", "text": "kept"},
        )
        replica = setup.replica()
        await asyncio.to_thread(_replicated, replica, prefix, 1)
        await asyncio.to_thread(_stop_replicating, replica)
        await alice.send(
            {"type": "message", "room": "lobby", "ref": "l", "text": "lost"}
        )
        answer = await alice.until(lambda f: f.get("ref") == "l")
        old = await asyncio.to_thread(setup.kill_primary)
        await asyncio.to_thread(setup.wait_failover, old.port)
        await bob.find("resync", room="lobby")
        await bob.send({"type": "history", "room": "lobby"})
        history = [m["text"] for m in (await bob.find("history"))["messages"]]
    assert history == ["kept"]
    assert kept["id"]
    if wait_replicas:
        assert answer["type"] == "error" and answer["code"] == "unavailable"
    else:
        # Acknowledged, and lost: asynchronous replication.
        assert answer["type"] == "ack", answer


def _replicated(replica: RedisServer, prefix: str, count: int) -> None:
    deadline = time.monotonic() + 10
    with redis.Redis(port=replica.port) as client:
        while client.xlen(f"{prefix}history:lobby") < count:
            assert time.monotonic() < deadline, "replication is stuck"
            time.sleep(0.02)


def _stop_replicating(replica: RedisServer) -> None:
    with redis.Redis(port=replica.port) as client:
        client.replicaof("127.0.0.1", free_port())
