"""Unit tests of the subscriber bookkeeping every broker shares.

``Subscribers`` is pure: no server, no socket. The hooks stand in for a
backend's own subscribe and unsubscribe at its server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sanic_chat import BroadcasterUnavailable, Event, Gap
from sanic_chat.backends import Subscribers, Subscription


class Server:
    """Records what a backend would ask its server."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[str] = []
        self.fail = fail

    async def subscribe(self, channel: str) -> None:
        self.calls.append(f"subscribe {channel}")
        if self.fail:
            self.fail -= 1
            raise BroadcasterUnavailable("refused")

    async def unsubscribe(self, channel: str) -> None:
        self.calls.append(f"unsubscribe {channel}")


def subscribers(server: Server, queue_size: int = 100) -> Subscribers:
    return Subscribers(
        queue_size, on_first=server.subscribe, on_last=server.unsubscribe
    )


async def test_the_server_sees_one_subscription_per_channel() -> None:
    server = Server()
    local = subscribers(server)
    async with local.subscribe("a"), local.subscribe("a"):
        async with local.subscribe("b"):
            assert sorted(local.channels()) == ["a", "b"]
            assert len(local) == 2 and "a" in local
        assert server.calls == ["subscribe a", "subscribe b", "unsubscribe b"]
        assert "b" not in local
    assert server.calls[-1] == "unsubscribe a" and len(local) == 0
    async with local.subscribe("a"):
        pass
    assert server.calls[-2:] == ["subscribe a", "unsubscribe a"]


async def test_deliver_reaches_every_local_subscription_of_the_channel() -> (
    None
):
    local = Subscribers()
    async with (
        local.subscribe("a") as one,
        local.subscribe("a") as two,
        local.subscribe("b") as other,
    ):
        event = Event("a", '{"n":1}', "1", "origin")
        local.deliver(event)
        local.deliver(Event("nobody", "{}"))  # no subscription: dropped
        assert await anext(one) is event
        assert await anext(two) is event
        local.deliver(Event("b", "{}"))
        assert (await anext(other)).channel == "b"


async def test_ending_one_subscription_leaves_the_others() -> None:
    server = Server()
    local = subscribers(server)
    async with local.subscribe("a") as stays:
        async with local.subscribe("a") as goes:
            pass
        local.deliver(Event("a", "{}", "1"))
        assert [e async for e in goes] == []
        assert (await anext(stays)).id == "1"
    assert server.calls == ["subscribe a", "unsubscribe a"]


async def test_interrupt_gives_every_subscription_a_gap() -> None:
    local = Subscribers()
    async with local.subscribe("a") as a, local.subscribe("b") as b:
        local.deliver(Event("a", "{}", "1"))
        local.interrupt()
        assert isinstance(await anext(a), Event)
        assert await anext(a) == Gap("a", 0)
        assert await anext(b) == Gap("b", 0)


async def test_close_ends_every_subscription_without_unsubscribing() -> None:
    server = Server()
    local = subscribers(server)
    error = BroadcasterUnavailable("gone")
    async with local.subscribe("a") as a:
        async with local.subscribe("b") as b:
            local.close(error)
            assert len(local) == 0
            with pytest.raises(BroadcasterUnavailable):
                await anext(b)
        # The server connection is gone: nothing to unsubscribe from.
        async with local.subscribe("a") as again:
            local.deliver(Event("a", "{}", "2"))
            assert (await anext(again)).id == "2"
        with pytest.raises(BroadcasterUnavailable):
            await anext(a)
    assert server.calls == [
        "subscribe a",
        "subscribe b",
        "subscribe a",
        "unsubscribe a",
    ]


async def test_a_refused_first_subscription_fails_and_leaves_nothing() -> None:
    server = Server(fail=1)
    local = subscribers(server)
    with pytest.raises(BroadcasterUnavailable):
        async with local.subscribe("a"):
            raise AssertionError("never entered")
    assert "a" not in local
    assert server.calls == ["subscribe a", "unsubscribe a"]
    async with local.subscribe("a"):  # the next attempt subscribes again
        assert server.calls[-1] == "subscribe a"


async def test_a_subscription_falls_behind_into_a_gap() -> None:
    local = Subscribers(queue_size=2)
    async with local.subscribe("a") as a:
        for n in range(5):
            local.deliver(Event("a", "{}", str(n)))
        items = [await anext(a) for _ in range(3)]
        assert [getattr(i, "id", None) for i in items[:2]] == ["0", "1"]
        assert items[2] == Gap("a", 3)


# Push mode: a Subscription handing its events to a consumer.


class Consumer:
    """Records what a pushing subscription hands over."""

    def __init__(self) -> None:
        self.items: list[Event | Gap] = []
        self.ends: list[BaseException | None] = []
        self.calls = 0

    def receive(self, events: Sequence[Event]) -> None:
        assert events, "a callback hands over at least one event"
        self.calls += 1
        self.items.extend(events)

    def missed(self, gap: Gap) -> None:
        self.items.append(gap)

    def ended(self, error: BaseException | None) -> None:
        self.ends.append(error)


async def flushed() -> None:
    await asyncio.sleep(0)


async def test_a_pushing_subscription_hands_over_later_in_order() -> None:
    consumer = Consumer()
    events = [Event("a", "{}", str(n)) for n in range(3)]
    subscription = Subscription("a")
    subscription.deliver_to(consumer)
    for event in events:
        subscription.put(event)
    assert consumer.items == []  # not inside put(): after the publisher
    await flushed()
    assert consumer.items == events
    assert consumer.calls == 1  # together: one write per client
    subscription.put(events[0])
    await flushed()
    assert consumer.items == [*events, events[0]] and consumer.ends == []


async def test_a_pushing_subscription_keeps_its_bound_then_gives_a_gap() -> (
    None
):
    consumer = Consumer()
    subscription = Subscription("a", maxsize=2)
    subscription.deliver_to(consumer)
    for n in range(5):
        subscription.put(Event("a", "{}", str(n)))
    subscription.interrupt()
    subscription.close(BroadcasterUnavailable("gone"))
    subscription.close()  # the first close counts
    await flushed()
    ids = [getattr(item, "id", None) for item in consumer.items]
    assert ids == ["0", "1", None]
    assert consumer.items[2] == Gap("a", 3)
    [error] = consumer.ends
    assert isinstance(error, BroadcasterUnavailable)
    subscription.put(Event("a", "{}", "late"))  # closed: dropped
    await flushed()
    assert len(consumer.items) == 3 and len(consumer.ends) == 1


async def test_a_consumer_that_stops_gets_nothing_more() -> None:
    consumer = Consumer()
    subscription = Subscription("a")
    subscription.deliver_to(consumer)
    subscription.put(Event("a", "{}", "1"))
    subscription.deliver_to(None)
    await flushed()
    assert consumer.items == []
    # What waited is handed to the next consumer, then iteration resumes.
    subscription.deliver_to(consumer)
    await flushed()
    assert [getattr(i, "id", None) for i in consumer.items] == ["1"]
    subscription.deliver_to(None)
    subscription.put(Event("a", "{}", "2"))
    assert (await anext(subscription)).id == "2"  # type: ignore[union-attr]


async def test_leaving_without_await_returns_only_a_due_unsubscribe() -> None:
    server = Server()
    local = subscribers(server)
    one, two = local.subscribe("a"), local.subscribe("a")
    await one.__aenter__()
    await two.__aenter__()
    assert one.leave_nowait() is None  # "two" still follows "a"
    assert one.leave_nowait() is None  # and leaving twice is harmless
    pending = two.leave_nowait()
    assert pending is not None and "a" not in local
    await pending
    assert server.calls == ["subscribe a", "unsubscribe a"]
    assert two.leave_nowait() is None
    hookless = Subscribers()
    only = hookless.subscribe("b")
    await only.__aenter__()
    assert only.leave_nowait() is None and "b" not in hookless


async def test_an_unsubscribe_that_runs_after_a_new_subscribe_is_skipped() -> (
    None
):
    # The last member leaves (its unsubscribe is scheduled, as the hub
    # does, not yet run) and a new one subscribes before it runs: the
    # server must not end with the channel unsubscribed.
    server = Server()
    local = subscribers(server)
    first = local.subscribe("a")
    await first.__aenter__()
    pending = first.leave_nowait()
    assert pending is not None
    later = asyncio.ensure_future(pending)
    again = local.subscribe("a")
    await again.__aenter__()
    await later
    assert server.calls == ["subscribe a", "subscribe a"]
    assert "a" in local
    last = again.leave_nowait()
    assert last is not None
    await last
    assert server.calls[-1] == "unsubscribe a" and "a" not in local


async def test_a_subscription_is_its_own_context_manager() -> None:
    server = Server()
    local = subscribers(server)
    cm = local.subscribe("a")
    async with cm as subscription:
        # One object per subscription: an idle one costs no wrapper.
        assert subscription is cm and "a" in local
    assert "a" not in local
    assert server.calls == ["subscribe a", "unsubscribe a"]
    with pytest.raises(StopAsyncIteration):
        await anext(subscription)
    # A backend's own subscription, made without Subscribers: leaving
    # it just ends it.
    async with Subscription("b") as own:
        own.put(Event("b", "{}", "1"))
    assert (await anext(own)).id == "1"  # type: ignore[union-attr]
    with pytest.raises(StopAsyncIteration):
        await anext(own)
