"""``wait_replicas``: no ack until a replica holds the message, no
duplicate when the sender resends it meanwhile.

A real primary with no replica, then with one (both ``redis-server`` on
free ports): the failover itself is tested in tests/test_sentinel.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis

from .conftest import live, make_app, send_until_acked
from .redis_server import RedisServer


def _wait_replica_online(primary: RedisServer, within: float = 20) -> None:
    deadline = time.monotonic() + within
    with redis.Redis(port=primary.port) as client:
        while time.monotonic() < deadline:
            slave = client.info("replication").get("slave0", {})
            if slave.get("state") == "online":
                return
            time.sleep(0.05)
    raise RuntimeError("the replica did not come online")


@pytest.mark.slow
async def test_no_ack_before_a_replica_holds_it_and_no_duplicate(
    tmp_path: Path,
) -> None:
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = RedisServer(
        tmp_path / "replica",
        args=("--replicaof", "127.0.0.1", str(primary.port)),
    )
    try:
        url = f"{primary.url}?prefix=d:&wait_replicas=1&wait_timeout=300"
        async with (
            live(make_app(broadcaster=url)) as srv,
            srv.client() as alice,
            srv.client() as bob,
        ):
            frame = {"type": "message", "room": "lobby", "text": "hi"}
            await alice.send({**frame, "ref": "r1"})
            # Published (members see it) but not acknowledged.
            published = await bob.find("message", text="hi")
            error = await alice.find("error", ref="r1")
            assert error["code"] == "unavailable"
            # A resend while no replica holds it: not acked, not
            # published again.
            await alice.send({**frame, "ref": "r1"})
            assert (await alice.find("error", ref="r1"))["code"] == (
                "unavailable"
            )
            # A replica comes: the resend is acknowledged, same id.
            replica.start()
            await asyncio.to_thread(_wait_replica_online, primary)
            ack = await send_until_acked(alice, {**frame, "ref": "r1"})
            assert ack["id"] == published["id"]
            # And new messages are acknowledged.
            await send_until_acked(
                alice, {**frame, "text": "next", "ref": "r2"}
            )
            await bob.send({"type": "history", "room": "lobby"})
            history = (await bob.find("history"))["messages"]
            assert [m["text"] for m in history] == ["hi", "next"]
            assert history[0]["id"] == published["id"]
    finally:
        replica.kill()
        primary.kill()
