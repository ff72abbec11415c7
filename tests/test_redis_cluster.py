"""The Redis broadcaster on Redis Cluster: slots, shards and failover.

The session shares one real cluster (3 primaries, 3 replicas, see
``tests/redis_cluster.py``); the conformance suite (test_backends.py) and
the protocol suite (the ``backend`` fixture) run on it too. Each test
uses its own key prefix.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from pathlib import Path
from typing import Any

import pytest

from sanic_chat import ConfigError, Gap, broadcaster_from_url
from sanic_chat.backends.redis_cluster import ClusterLink

from .conftest import remote, run_example, send_until_acked
from .redis_cluster import RedisCluster


def _prefix() -> str:
    return f"c{secrets.token_hex(3)}:"


# -- the URL and the key names (no server) ------------------------------------


def test_the_url_names_the_cluster_with_its_password_masked() -> None:
    broadcaster = broadcaster_from_url(
        "redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001/"
        "?prefix=app:&timeout=3&heartbeat=2"
    )
    shown = repr(broadcaster)
    assert "s3cret" not in shown
    assert "10.0.0.1:7000,10.0.0.2:7001" in shown
    assert "prefix='app:'" in shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster:///", "needs at least one host"),
        ("redis+cluster://h1:7000,h2/", "host:port"),
        ("redis+cluster://h1:7000/?prefix={x}:", "must not contain"),
        ("redis+cluster://h1:7000/?timeout=soon", "invalid parameter"),
    ],
)
def test_a_bad_cluster_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        broadcaster_from_url(url)


def test_keys_of_a_room_carry_its_hash_tag_and_refs_stay_single() -> None:
    link = ClusterLink("redis+cluster://h:1/", prefix="p:", timeout=1)
    assert link.key("room", "dev") == "p:room:{dev}"
    assert link.key("history", "dev") == "p:history:{dev}"
    assert link.key("worker", "abc") == "p:worker:{abc}"
    assert link.key("ref", "3:bob:r1") == "p:ref:3:bob:r1"
    assert link.name_of("room", "p:room:{a.b:c-d}") == "a.b:c-d"


# -- on the shared cluster ---------------------------------------------------


def _keys(cluster: RedisCluster, prefix: str) -> dict[int, list[str]]:
    """Every key under ``prefix``, by the port of the primary holding it."""
    found = {}
    for node in cluster.primaries():
        out = cluster.cli(node.port, "--scan", "--pattern", prefix + "*")
        found[node.port] = out.split()
    return found


@pytest.mark.slow
async def test_every_key_of_a_room_lives_in_the_slot_of_the_room(
    redis_cluster: RedisCluster,
) -> None:
    prefix = _prefix()
    broadcaster = broadcaster_from_url(f"{redis_cluster.url}?prefix={prefix}")
    await broadcaster.connect()
    user = {"id": "u1", "name": "Ann"}
    try:
        for room in ("dev", "ops", "sales"):
            event = await broadcaster.publish(room, "hello")
            await broadcaster.presence_add(room, user)
            receipts: Any = broadcaster.receipts_part  # type: ignore[attr-defined]
            assert event.id is not None
            assert await receipts.mark_read(room, "u1", event.id)
        keys = _keys(redis_cluster, prefix)
    finally:
        await broadcaster.disconnect()
    for room in ("dev", "ops", "sales"):
        owner = redis_cluster.owner(room)
        slot = redis_cluster.keyslot(room)
        mine = [k for k in keys[owner.port] if k.endswith("{" + room + "}")]
        assert sorted(k.split(":")[1] for k in mine) == [
            "history",
            "presence",
            "read",
        ]
        assert {redis_cluster.keyslot(k) for k in mine} == {slot}
        for port, others in keys.items():
            if port != owner.port:
                assert not [k for k in others if "{" + room + "}" in k]


@pytest.mark.slow
async def test_a_room_is_followed_and_published_on_its_own_shard_only(
    redis_cluster: RedisCluster,
) -> None:
    prefix = _prefix()
    url = f"{redis_cluster.url}?prefix={prefix}"
    listener = broadcaster_from_url(url)
    publisher = broadcaster_from_url(url)
    await listener.connect()
    await publisher.connect()
    channel = f"{prefix}room:{{dev}}"
    owner = redis_cluster.owner("dev")
    try:
        async with listener.subscribe("dev") as subscription:
            for node in redis_cluster.primaries():
                out = redis_cluster.cli(
                    node.port, "pubsub", "shardnumsub", channel
                ).split()
                assert out == [channel, "1" if node is owner else "0"]
                # Nothing on the cluster-wide (non-sharded) bus.
                assert (
                    redis_cluster.cli(
                        node.port, "pubsub", "channels", prefix + "*"
                    ).split()
                    == []
                )
            await publisher.publish("dev", "one")
            await publisher.publish("dev", "two", store=False)
            got = []
            async with asyncio.timeout(5):
                async for event in subscription:
                    got.append(event.payload)  # type: ignore[union-attr]
                    if len(got) == 2:
                        break
            assert got == ["one", "two"]
    finally:
        await listener.disconnect()
        await publisher.disconnect()


@pytest.mark.slow
async def test_a_room_follows_its_slot_to_another_shard(
    redis_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Migrating a room's slot ends its sharded subscription (Redis sends
    ``sunsubscribe``): the worker resubscribes on the new owner and tells
    that room's subscribers they may have missed events (a gap); a room
    on another shard is left alone."""
    prefix = _prefix()
    url = f"{redis_cluster.url}?prefix={prefix}&heartbeat=0.5"
    listener = broadcaster_from_url(url)
    publisher = broadcaster_from_url(url)
    await listener.connect()
    await publisher.connect()
    room = f"moving{secrets.token_hex(2)}"
    source = redis_cluster.owner(room)
    target = next(n for n in redis_cluster.primaries() if n is not source)
    channel = f"{prefix}room:{{{room}}}"
    calm = next(
        f"calm{i}"
        for i in range(100)
        if redis_cluster.owner(f"calm{i}") not in (source, target)
    )
    try:
        async with (
            listener.subscribe(room) as subscription,
            listener.subscribe(calm) as elsewhere,
        ):
            events = aiter(subscription)
            await publisher.publish(room, "before")
            async with asyncio.timeout(5):
                assert (await anext(events)).payload == "before"  # type: ignore[union-attr]
            await asyncio.to_thread(
                redis_cluster.move_slot, redis_cluster.keyslot(room), target
            )
            async with asyncio.timeout(10):
                gap = await anext(events)
            assert isinstance(gap, Gap)
            assert f"slot of {channel} moved" in caplog.text
            assert redis_cluster.cli(
                target.port, "pubsub", "shardnumsub", channel
            ).split() == [channel, "1"]
            await publisher.publish(room, "after")
            async with asyncio.timeout(5):
                assert (await anext(events)).payload == "after"  # type: ignore[union-attr]
            await publisher.publish(calm, "still")
            async with asyncio.timeout(5):
                assert (await anext(aiter(elsewhere))).payload == "still"  # type: ignore[union-attr]
        page = await publisher.history(room, limit=10)
        assert [e.payload for e in page.events] == ["before", "after"]
    finally:
        await listener.disconnect()
        await publisher.disconnect()


@pytest.mark.slow
@pytest.mark.logs_errors
async def test_the_heartbeat_finds_a_frozen_shard_and_rebuilds(
    redis_cluster: RedisCluster,
) -> None:
    """A primary that hangs (SIGSTOP: its connections stay open) and owns
    neither the worker's control channel nor anything it reads: only the
    heartbeat's ping on each shard can tell. The worker reports itself
    unhealthy, rebuilds its connections and tells subscribers (a gap)."""
    prefix = _prefix()
    url = f"{redis_cluster.url}?prefix={prefix}&heartbeat=0.5&timeout=1"
    broadcaster = broadcaster_from_url(url)
    await broadcaster.connect()
    control = redis_cluster.owner(f"{prefix}control:{{{broadcaster.worker}}}")  # type: ignore[attr-defined]
    frozen = next(n for n in redis_cluster.primaries() if n is not control)
    room = next(
        f"r{i}" for i in range(100) if redis_cluster.owner(f"r{i}") is control
    )
    try:
        async with broadcaster.subscribe(room) as subscription:
            events = aiter(subscription)
            assert broadcaster.healthy
            frozen.pause()
            try:
                async with asyncio.timeout(10):
                    while broadcaster.healthy:
                        await asyncio.sleep(0.05)
            finally:
                frozen.resume()
            await asyncio.to_thread(redis_cluster.wait_ok)
            async with asyncio.timeout(20):
                while not broadcaster.healthy:
                    await asyncio.sleep(0.05)
                assert isinstance(await anext(events), Gap)
    finally:
        frozen.resume()
        await broadcaster.disconnect()
        await asyncio.to_thread(redis_cluster.wait_ok)


# -- failover ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.logs_errors
async def test_a_primary_dies_the_replica_takes_over_and_clients_recover(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    """Kill the primary of the room's slot with a worker and a client on
    each side; with ``wait_replicas=1`` every acknowledged message is
    delivered once, in the same order for everyone.

    Replication is asynchronous: without ``wait_replicas`` an ack just
    before the kill may be lost with the primary. With it, an ack means
    the replica that takes over holds the message. After the failover the
    new primary has no replica until the old one is back: sends get
    ``unavailable`` until then, and are resent with the same ref.
    """
    prefix = _prefix()
    env = {
        "SANIC_CHAT_BROADCASTER_URL": (
            f"{redis_cluster.url}?prefix={prefix}&heartbeat=0.5"
            "&wait_replicas=1"
        ),
        "SANIC_CHAT_RATE_BURST": "100",
    }
    owner = redis_cluster.owner("lobby")
    with (
        run_example(tmp_path / "a.log", "--allow-anonymous", **env) as port_a,
        run_example(tmp_path / "b.log", "--allow-anonymous", **env) as port_b,
    ):
        async with (
            remote(port_a).client(name="alice") as alice,
            remote(port_b).client(name="bob") as bob,
        ):
            await alice.find("joined", user=bob.user)  # across workers
            for i in range(3):
                for client, name in ((alice, "a"), (bob, "b")):
                    await send_until_acked(client, _message(f"{name}{i}"))
            await alice.send({"type": "history", "room": "lobby"})
            before = [
                (m["id"], m["text"])
                for m in (await alice.find("history"))["messages"]
            ]
            assert len(before) == 6
            owner.kill()
            try:
                for client in (alice, bob):
                    await client.until(
                        lambda f: (
                            f["type"] == "resync" and f["room"] == "lobby"
                        ),
                        30,
                    )
                await asyncio.to_thread(redis_cluster.wait_ok)
                assert redis_cluster.owner("lobby") is not owner
            finally:
                # Back as the new primary's replica: WAIT can be met.
                owner.start()
                await asyncio.to_thread(redis_cluster.wait_ok)
            await send_until_acked(alice, _message("x"))
            await send_until_acked(bob, _message("b-after"))
            for client in (alice, bob):
                await client.send(
                    {"type": "join", "room": "lobby", "since": before[-1][0]}
                )
                await client.find("joined", room="lobby", recovered=True)
            await alice.send({"type": "history", "room": "lobby"})
            history = [
                (m["id"], m["text"])
                for m in (await alice.find("history"))["messages"]
            ]
            await bob.send({"type": "history", "room": "lobby"})
            seen_by_bob = [
                (m["id"], m["text"])
                for m in (await bob.find("history"))["messages"]
            ]
    assert history == seen_by_bob
    texts = [text for _, text in history]
    assert history[:6] == before  # nothing acknowledged was lost
    assert texts[6:] == ["x", "b-after"]  # once each, in order


_refs = itertools.count()


def _message(text: str) -> dict[str, Any]:
    """A ``message`` frame with a ref of its own, for resends."""
    return {
        "type": "message",
        "room": "lobby",
        "text": text,
        "ref": f"r{next(_refs)}",
    }
