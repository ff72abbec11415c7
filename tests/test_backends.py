"""Every built-in broadcaster passes the public conformance suite."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

import sanic_chat
from sanic_chat import (
    Broadcaster,
    Broker,
    Event,
    Gap,
    HistoryPage,
    MemoryBroadcaster,
    Presence,
    PresenceInfo,
    Subscription,
    broadcaster_from_url,
)
from sanic_chat.backends import CombinedBroadcaster, MemoryPresence
from sanic_chat.backends.base import Subscribing
from sanic_chat.testing import (
    BROADCASTER_CHECKS,
    BROKER_CHECKS,
    IDEMPOTENCY_CHECKS,
    PRESENCE_CHECKS,
    RECEIPTS_CHECKS,
    Check,
    check_broadcaster,
    check_broker,
    check_idempotency,
    check_idempotency_shared,
    check_presence,
    check_receipts,
    check_receipts_shared,
)

from .conftest import live, make_app


@pytest.fixture(params=["memory", "redis", "redis-sentinel", "redis-cluster"])
def factory(request: pytest.FixtureRequest) -> Callable[[], Broadcaster]:
    """A factory of fresh broadcasters of each built-in kind.

    The Sentinel one also waits for its replica (``wait_replicas=1``).
    """
    if request.param == "memory":
        return lambda: broadcaster_from_url("memory://", history_size=20)
    if request.param == "redis-sentinel":
        setup = request.getfixturevalue("redis_sentinel")
        sentinel_url = setup.url("wait_replicas=1")
        return lambda: broadcaster_from_url(sentinel_url, history_size=20)
    if request.param == "redis-cluster":
        # wait_replicas=1: the WAIT runs on the shard owning each key.
        cluster = request.getfixturevalue("redis_cluster").url
        cluster_url = cluster + "?wait_replicas=1"
        return lambda: broadcaster_from_url(cluster_url, history_size=20)
    url = request.getfixturevalue("redis_server").url
    return lambda: broadcaster_from_url(url, history_size=20)


@pytest.mark.parametrize("check", BROADCASTER_CHECKS, ids=lambda c: c.__name__)
async def test_conformance(
    factory: Callable[[], Broadcaster], check: Check
) -> None:
    broadcaster = factory()
    await broadcaster.connect()
    try:
        await check(broadcaster)
    finally:
        await broadcaster.disconnect()


@pytest.mark.parametrize("check", RECEIPTS_CHECKS, ids=lambda c: c.__name__)
async def test_receipts_conformance(
    factory: Callable[[], Broadcaster], check: Check
) -> None:
    broadcaster = factory()
    await broadcaster.connect()
    try:
        await check(broadcaster)
    finally:
        await broadcaster.disconnect()


async def test_a_channel_left_and_subscribed_again_at_once_still_hears(
    redis_server: Any,
) -> None:
    # The hub leaves a channel without waiting for the unsubscribe (a
    # task runs it); a new first subscriber may come before that task
    # runs. Redis then saw SUBSCRIBE, UNSUBSCRIBE: the channel was deaf.
    prefix = f"again{secrets.token_hex(3)}:"
    broadcaster = broadcaster_from_url(f"{redis_server.url}?prefix={prefix}")
    await broadcaster.connect()
    try:
        first = broadcaster.subscribe("r")
        await first.__aenter__()
        assert isinstance(first, Subscribing)
        pending = first.leave_nowait()
        assert pending is not None
        leaving = asyncio.ensure_future(pending)
        again = broadcaster.subscribe("r")
        events = await again.__aenter__()
        await leaving
        await broadcaster.publish("r", "hello")
        item = await asyncio.wait_for(anext(aiter(events)), 5)
        assert isinstance(item, Event) and item.payload == "hello"
        await again.__aexit__(None, None, None)
    finally:
        await broadcaster.disconnect()


async def test_receipts_are_shared_by_two_redis_instances(
    redis_server: Any,
) -> None:
    prefix = f"shared{secrets.token_hex(3)}:"
    first = broadcaster_from_url(f"{redis_server.url}?prefix={prefix}")
    second = broadcaster_from_url(f"{redis_server.url}?prefix={prefix}")
    await first.connect()
    await second.connect()
    try:
        await check_receipts_shared(first, second)
    finally:
        await first.disconnect()
        await second.disconnect()


@pytest.mark.parametrize("check", IDEMPOTENCY_CHECKS, ids=lambda c: c.__name__)
async def test_idempotency_conformance(
    factory: Callable[[], Broadcaster], check: Check
) -> None:
    broadcaster = factory()
    await broadcaster.connect()
    try:
        await check(broadcaster)
    finally:
        await broadcaster.disconnect()


async def test_refs_are_shared_by_two_redis_instances(
    redis_server: Any,
) -> None:
    prefix = f"refs{secrets.token_hex(3)}:"
    first = broadcaster_from_url(f"{redis_server.url}?prefix={prefix}")
    second = broadcaster_from_url(f"{redis_server.url}?prefix={prefix}")
    await first.connect()
    await second.connect()
    try:
        await check_idempotency_shared(first, second)
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_the_idempotency_runner_and_combinations() -> None:
    # At once: each waits out its refs' expiry.
    await asyncio.gather(
        check_idempotency(MemoryBroadcaster),
        check_idempotency(
            lambda: CombinedBroadcaster(MemoryBroadcaster(), MemoryPresence())
        ),
    )
    idempotency_of = sanic_chat.backends.base.idempotency_of
    assert idempotency_of(OldStyleBroadcaster()) is None
    combined = CombinedBroadcaster(OldStyleBroadcaster(), MemoryPresence())
    assert idempotency_of(combined) is None


async def test_the_receipts_runner_and_a_combination_that_keeps_them() -> None:
    await check_receipts(MemoryBroadcaster)
    await check_receipts(
        lambda: CombinedBroadcaster(MemoryBroadcaster(), MemoryPresence())
    )
    assert sanic_chat.backends.base.receipts_of(OldStyleBroadcaster()) is None
    combined = CombinedBroadcaster(OldStyleBroadcaster(), MemoryPresence())
    assert sanic_chat.backends.base.receipts_of(combined) is None


async def test_check_broadcaster_runs_the_whole_suite() -> None:
    await check_broadcaster(MemoryBroadcaster)


async def test_the_suite_catches_a_broken_backend() -> None:
    class Forgetful(MemoryBroadcaster):
        async def history(self, channel, *, limit, after=None, before=None):  # type: ignore[no-untyped-def]
            page = await super().history(
                channel, limit=limit, after=after, before=before
            )
            page.events.reverse()
            return page

    with pytest.raises(AssertionError, match="check_order"):
        await check_broadcaster(Forgetful)


async def test_ids_pushed_out_of_history_are_not_found(
    factory: Callable[[], Broadcaster],
) -> None:
    broadcaster = factory()  # history_size=20
    channel = f"paging-{secrets.token_hex(4)}"
    await broadcaster.connect()
    try:
        ids = [
            (await broadcaster.publish(channel, f'{{"n":{i}}}')).id
            for i in range(25)
        ]
        gone, oldest = ids[0], ids[5]
        for after, before in ((gone, None), (None, gone), (gone, ids[10])):
            page = await broadcaster.history(
                channel, limit=10, after=after, before=before
            )
            assert not page.found and page.events == [], (after, before)
        page = await broadcaster.history(channel, limit=10, before=oldest)
        assert page.found and page.events == []
        page = await broadcaster.history(channel, limit=10, before=ids[10])
        assert [e.id for e in page.events] == ids[5:10]
        page = await broadcaster.history(
            channel, limit=10, after=oldest, before=ids[-1]
        )
        assert [e.id for e in page.events] == ids[6:16]
    finally:
        await broadcaster.disconnect()


async def test_memory_history_ring_and_channel_limit() -> None:
    backend = MemoryBroadcaster(history_size=3, max_channels=2)
    first = (await backend.publish("a", "{}")).id
    for _ in range(3):
        await backend.publish("a", "{}")
    page = await backend.history("a", limit=10, after=first)
    assert not page.found, "pushed out of the ring: cannot recover"
    assert len((await backend.history("a", limit=10)).events) == 3
    await backend.publish("b", "{}")
    await backend.publish("c", "{}")  # evicts "a", the least recent
    assert (await backend.history("a", limit=10)).events == []


async def test_ids_from_another_process_lifetime_are_not_recovered() -> None:
    old, new = MemoryBroadcaster(), MemoryBroadcaster()
    stale = (await old.publish("a", "{}")).id
    await new.publish("a", "{}")
    assert stale is not None
    assert not (await new.history("a", limit=10, after=stale)).found


async def test_a_subscriber_that_falls_behind_gets_a_gap() -> None:
    backend = MemoryBroadcaster(queue_size=3)
    async with backend.subscribe("a") as subscription:
        for i in range(10):
            await backend.publish("a", f'{{"n":{i}}}')
        items = [await anext(subscription) for _ in range(4)]
        assert [type(i).__name__ for i in items] == ["Event"] * 3 + ["Gap"]
        assert items[3] == Gap("a", 7)
        await backend.publish("a", '{"n":"live"}')
        live = await anext(subscription)
        assert not isinstance(live, Gap) and live.payload == '{"n":"live"}'


# -- the split interface: broker and presence parts ------------------------


class OldStyleBroadcaster(Broadcaster):
    """A backend written against 0.1: every method by itself, one class.

    No ``Subscribers``, no ``Broker`` or ``Presence``: it must keep working
    and pass the whole suite, new checks included.
    """

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._history: dict[str, list[Event]] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._presence: dict[str, dict[str, list[Any]]] = {}

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        for subscriptions in self._subscribers.values():
            for subscription in subscriptions:
                subscription.close()
        self._subscribers.clear()

    async def publish(
        self,
        channel: str,
        payload: str,
        *,
        store: bool = True,
        origin: str | None = None,
    ) -> Event:
        event_id = f"old-{next(self._counter)}" if store else None
        event = Event(channel, payload, event_id, origin)
        if store:
            self._history.setdefault(channel, []).append(event)
        for subscription in self._subscribers.get(channel, ()):
            subscription.put(event)
        return event

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel)
        self._subscribers.setdefault(channel, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscription.close()
            self._subscribers.get(channel, set()).discard(subscription)

    async def history(
        self,
        channel: str,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
    ) -> HistoryPage:
        events = self._history.get(channel, [])
        ids = [e.id for e in events]
        if after is None and before is None:
            return HistoryPage(events[-limit:])
        if (after is not None and after not in ids) or (
            before is not None and before not in ids
        ):
            return HistoryPage([], found=False)
        start = 0 if after is None else ids.index(after) + 1
        end = len(ids) if before is None else ids.index(before)
        if after is None:
            return HistoryPage(events[max(start, end - limit) : end])
        return HistoryPage(events[start : min(end, start + limit)])

    async def presence_add(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        entry = self._presence.setdefault(channel, {}).setdefault(
            user["id"], [0, user]
        )
        entry[0] += 1

    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        users = self._presence.get(channel, {})
        entry = users.get(user["id"])
        if entry is not None:
            entry[0] -= 1
            if entry[0] <= 0:
                del users[user["id"]]

    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        users = [user for _, user in self._presence.get(channel, {}).values()]
        return PresenceInfo(users[:limit], len(users))


async def test_a_backend_written_for_0_1_passes_the_whole_suite() -> None:
    backend = OldStyleBroadcaster()
    assert isinstance(backend, Broker) and isinstance(backend, Presence)
    await check_broadcaster(OldStyleBroadcaster)


async def test_a_backend_written_for_0_1_serves_a_chat() -> None:
    """End to end: the hub needs nothing of a backend that 0.1 did not."""
    app = make_app(broadcaster=OldStyleBroadcaster())
    async with live(app) as srv, srv.client() as alice, srv.client() as bob:
        said = await alice.say("hello, old backend")
        heard = await bob.find("message", text="hello, old backend")
        assert heard["id"] == said["id"] and said["id"].startswith("old-")
        await bob.send({"type": "presence", "room": "lobby"})
        presence = await bob.find("presence", room="lobby")
        assert presence["count"] == 2
        await bob.send({"type": "history", "room": "lobby"})
        history = await bob.find("history", room="lobby")
        assert [m["id"] for m in history["messages"]] == [said["id"]]


def test_the_checks_are_split_by_part() -> None:
    assert BROADCASTER_CHECKS == BROKER_CHECKS + PRESENCE_CHECKS
    assert not set(BROKER_CHECKS) & set(PRESENCE_CHECKS)
    presence = {c.__name__ for c in PRESENCE_CHECKS}
    assert all(name.startswith("check_presence") for name in presence)


async def test_each_part_has_its_own_runner() -> None:
    await check_broker(MemoryBroadcaster)
    await check_presence(MemoryPresence)


async def test_the_suite_catches_a_broker_that_counts_subscriptions_wrong() -> (
    None
):
    class OneListener(MemoryBroadcaster):
        """Ending one local subscription ends the channel for everyone."""

        def __init__(self) -> None:
            super().__init__()
            self.followers: dict[str, list[Subscription]] = {}

        @asynccontextmanager
        async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
            async with super().subscribe(channel) as subscription:
                self.followers.setdefault(channel, []).append(subscription)
                yield subscription
            for other in self.followers.pop(channel, []):
                other.close()

    with pytest.raises(AssertionError, match="check_local_subscriptions"):
        await check_broker(OneListener)


async def test_the_suite_catches_a_presence_that_mixes_channels() -> None:
    class OneBigRoom(MemoryPresence):
        async def presence_add(
            self, channel: str, user: Mapping[str, str]
        ) -> None:
            await super().presence_add("everywhere", user)

        async def presence_remove(
            self, channel: str, user: Mapping[str, str]
        ) -> None:
            await super().presence_remove("everywhere", user)

        async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
            return await super().presence("everywhere", limit=limit)

    with pytest.raises(AssertionError, match="check_presence_channels"):
        await check_presence(OneBigRoom)


@pytest.mark.parametrize("check", BROADCASTER_CHECKS, ids=lambda c: c.__name__)
async def test_a_broker_combined_with_our_presence_conforms(
    factory: Callable[[], Broadcaster], check: Check
) -> None:
    combined = CombinedBroadcaster(factory(), MemoryPresence())
    await combined.connect()
    try:
        await check(combined)
    finally:
        await combined.disconnect()


class Recorder(MemoryPresence):
    """A presence part that records its lifecycle."""

    def __init__(self, calls: list[str], fail: bool = False) -> None:
        super().__init__()
        self.calls = calls
        self.fail = fail

    async def connect(self) -> None:
        self.calls.append("presence connect")
        if self.fail:
            raise sanic_chat.BroadcasterUnavailable("presence down")

    async def disconnect(self) -> None:
        self.calls.append("presence disconnect")


class RecordingBroker(MemoryBroadcaster):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    async def connect(self) -> None:
        self.calls.append("broker connect")

    async def disconnect(self) -> None:
        self.calls.append("broker disconnect")
        await super().disconnect()


async def test_a_combination_runs_each_lifecycle_once_in_order() -> None:
    calls: list[str] = []
    combined = CombinedBroadcaster(RecordingBroker(calls), Recorder(calls))
    await combined.connect()
    await combined.presence_add("lobby", {"id": "a", "name": "A"})
    assert (await combined.presence("lobby", limit=5)).count == 1
    assert (await combined.broker.presence("lobby", limit=5)).count == 0
    await combined.disconnect()
    assert calls == [
        "broker connect",
        "presence connect",
        "presence disconnect",
        "broker disconnect",
    ]
    calls.clear()
    same = RecordingBroker(calls)
    both = CombinedBroadcaster(same, same)
    await both.connect()
    await both.disconnect()
    assert calls == ["broker connect", "broker disconnect"]


async def test_a_combination_whose_presence_fails_disconnects_the_broker() -> (
    None
):
    calls: list[str] = []
    combined = CombinedBroadcaster(
        RecordingBroker(calls), Recorder(calls, fail=True)
    )
    with pytest.raises(sanic_chat.BroadcasterUnavailable):
        await combined.connect()
    assert calls == ["broker connect", "presence connect", "broker disconnect"]


def test_a_combination_reports_the_health_of_both_parts() -> None:
    class Down(MemoryBroadcaster):
        reconnects = 3

        @property
        def healthy(self) -> bool:
            return False

    broker, down = MemoryBroadcaster(), Down()
    assert CombinedBroadcaster(broker, MemoryPresence()).healthy
    assert CombinedBroadcaster(broker, MemoryPresence()).reconnects == 0
    assert not CombinedBroadcaster(down, MemoryPresence()).healthy
    assert not CombinedBroadcaster(broker, down).healthy
    assert CombinedBroadcaster(broker, down).reconnects == 3
    assert CombinedBroadcaster(down, down).reconnects == 3
