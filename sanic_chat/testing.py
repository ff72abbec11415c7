"""Conformance checks for broadcaster backends.

A backend author runs them against their own backend to check the
contract in :mod:`sanic_chat.backends.base`; both built-in backends pass
them. There is a tuple of checks per part of the interface:

* :data:`BROKER_CHECKS` for a :class:`~sanic_chat.backends.base.Broker`
  (publish, subscribe, history);
* :data:`PRESENCE_CHECKS` for a
  :class:`~sanic_chat.backends.base.Presence`;
* :data:`BROADCASTER_CHECKS`, both, for a :class:`Broadcaster`;
* :data:`RECEIPTS_CHECKS` for a broadcaster that also keeps read
  receipts (:class:`~sanic_chat.backends.base.Receipts`, optional), and
  :func:`check_receipts_shared` for two processes' instances of one that
  shares them;
* :data:`IDEMPOTENCY_CHECKS` for a broadcaster that remembers the refs
  of messages sent (:class:`~sanic_chat.backends.base.Idempotency`,
  optional), and :func:`check_idempotency_shared` for two processes'
  instances of one that shares them.

With pytest::

    import pytest
    from sanic_chat.testing import BROADCASTER_CHECKS

    @pytest.mark.parametrize("check", BROADCASTER_CHECKS)
    async def test_my_backend(check):
        backend = MyBroadcaster(...)
        await backend.connect()
        try:
            await check(backend)
        finally:
            await backend.disconnect()

Each check takes a connected backend (for broker checks, with a history
size of at least 10), uses channels with a random prefix (so a shared
server is fine), and raises ``AssertionError`` with a message on failure.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from . import protocol
from .backends.base import (
    PENDING,
    Broadcaster,
    Broker,
    Event,
    Gap,
    Idempotency,
    Presence,
    ReadState,
    Receipts,
    Subscription,
    idempotency_of,
    receipts_of,
)

Check = Callable[[Broadcaster], Awaitable[None]]
"""A check of a whole broadcaster (any broker or presence check is one)."""
BrokerCheck = Callable[[Broker], Awaitable[None]]
"""A check of the broker part."""
PresenceCheck = Callable[[Presence], Awaitable[None]]
"""A check of the presence part."""

_Part = TypeVar("_Part", bound=Broker | Presence)

TIMEOUT = 5.0

# Ids that no backend can have stored, whatever its id format.
_GARBAGE_IDS = (
    "",
    "x",
    "0-0",
    "../*",
    "9" * 40,
    f"{2**64 - 1}-{2**64 - 1}",
)


def _channel(name: str) -> str:
    return f"conformance-{secrets.token_hex(4)}-{name}"


async def _publish_many(
    broadcaster: Broker, channel: str, count: int
) -> list[str]:
    ids = []
    for i in range(count):
        event = await broadcaster.publish(channel, f'{{"n":{i}}}')
        assert event.id, "a stored event must get an id"
        ids.append(event.id)
    return ids


async def _take(subscription: Subscription, count: int) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(TIMEOUT):
        while len(events) < count:
            try:
                item = await anext(subscription)
            except StopAsyncIteration:
                raise AssertionError(
                    f"the subscription ended after {len(events)} of "
                    f"{count} events"
                ) from None
            if not isinstance(item, Gap):
                events.append(item)
    return events


async def check_publish_reaches_subscribers(broadcaster: Broker) -> None:
    """Every subscriber gets every event, unchanged, with the same id."""
    channel = _channel("fanout")
    async with (
        broadcaster.subscribe(channel) as one,
        broadcaster.subscribe(channel) as two,
    ):
        published = await broadcaster.publish(channel, '{"n":1}')
        assert published.id, "a stored event must get an id"
        for subscription in (one, two):
            (event,) = await _take(subscription, 1)
            assert event.payload == '{"n":1}', event
            assert event.id == published.id, (event, published)
            assert event.channel == channel


async def check_order_is_the_same_for_everyone(
    broadcaster: Broker,
) -> None:
    """Subscribers see a channel's events in one order, the order of ids."""
    channel = _channel("order")
    async with (
        broadcaster.subscribe(channel) as one,
        broadcaster.subscribe(channel) as two,
    ):
        sent = await asyncio.gather(
            *(broadcaster.publish(channel, f'{{"n":{i}}}') for i in range(10))
        )
        ids_one = [e.id for e in await _take(one, 10)]
        ids_two = [e.id for e in await _take(two, 10)]
        assert ids_one == ids_two, "subscribers disagree on order"
        assert len(set(ids_one)) == 10, "ids must be unique"
        assert set(ids_one) == {e.id for e in sent}
        page = await broadcaster.history(channel, limit=10)
        assert [e.id for e in page.events] == ids_one, (
            "history order differs from delivery order"
        )


async def check_channels_are_separate(broadcaster: Broker) -> None:
    """A subscriber of one channel gets nothing from another."""
    a, b = _channel("a"), _channel("b")
    async with broadcaster.subscribe(a) as sub_a:
        await broadcaster.publish(b, '{"to":"b"}')
        await broadcaster.publish(a, '{"to":"a"}')
        (event,) = await _take(sub_a, 1)
        assert event.payload == '{"to":"a"}'
    assert (await broadcaster.history(a, limit=10)).events[0].channel == a


async def check_ephemeral_events_skip_history(
    broadcaster: Broker,
) -> None:
    """``store=False`` events are delivered with origin, not stored."""
    channel = _channel("ephemeral")
    async with broadcaster.subscribe(channel) as subscription:
        event = await broadcaster.publish(
            channel, '{"type":"joined"}', store=False, origin="c1"
        )
        assert event.id is None
        (received,) = await _take(subscription, 1)
        assert received.id is None and received.origin == "c1"
    page = await broadcaster.history(channel, limit=10)
    assert page.events == [], "ephemeral events must not be stored"


async def check_history_and_recovery(broadcaster: Broker) -> None:
    """``history`` is bounded, oldest first; ``after`` resumes exactly."""
    channel = _channel("history")
    ids = [
        (await broadcaster.publish(channel, f'{{"n":{i}}}')).id
        for i in range(6)
    ]
    page = await broadcaster.history(channel, limit=3)
    assert [e.id for e in page.events] == ids[-3:] and page.found
    page = await broadcaster.history(channel, limit=10, after=ids[2])
    assert page.found and [e.id for e in page.events] == ids[3:]
    page = await broadcaster.history(channel, limit=2, after=ids[2])
    assert [e.id for e in page.events] == ids[3:5]
    page = await broadcaster.history(channel, limit=10, after=ids[-1])
    assert page.found and page.events == []
    for garbage in (*_GARBAGE_IDS, f"{ids[0]}\n"):
        page = await broadcaster.history(channel, limit=10, after=garbage)
        assert not page.found, f"garbage id {garbage!r} was found"
    empty = await broadcaster.history(_channel("never"), limit=10)
    assert empty.events == [] and empty.found


async def check_edits_and_deletes_are_stored_verbatim(
    broadcaster: Broker,
) -> None:
    """Messages with ``meta``, edits and deletes come back as published.

    Edit and delete (:mod:`sanic_chat.revisions`) need no storage of
    their own: they are stored events of the room, which the chat folds
    onto their targets when it reads history. So a backend must store
    and return every payload byte for byte, in order, whatever its kind.
    """
    channel = _channel("revisions")
    user = {"id": "u1", "name": "Zoë"}
    payloads = [
        protocol.message_payload(channel, user, "hi ✓", 1, {"a": ["ü"]}),
        protocol.edited(channel, "x-1", "hi ✓✓", user, 2),
        protocol.deleted(channel, "x-1", user, 3),
    ]
    async with broadcaster.subscribe(channel) as subscription:
        ids = [(await broadcaster.publish(channel, p)).id for p in payloads]
        received = await _take(subscription, 3)
    assert all(ids), "a stored event must get an id"
    assert [e.payload for e in received] == payloads
    page = await broadcaster.history(channel, limit=10)
    assert [e.payload for e in page.events] == payloads
    assert [e.id for e in page.events] == ids


async def check_history_pages_backwards(broadcaster: Broker) -> None:
    """``before`` pages back, oldest first; with ``after`` it is a range."""
    channel = _channel("paging")
    ids = await _publish_many(broadcaster, channel, 6)
    page = await broadcaster.history(channel, limit=10, before=ids[4])
    assert page.found and [e.id for e in page.events] == ids[:4]
    page = await broadcaster.history(channel, limit=2, before=ids[4])
    assert [e.id for e in page.events] == ids[2:4], (
        "before must return the newest events before the id, oldest first"
    )
    page = await broadcaster.history(channel, limit=10, before=ids[0])
    assert page.found and page.events == []
    # Paging back from the newest page meets every event once, in order.
    seen: list[str | None] = []
    page = await broadcaster.history(channel, limit=4)
    for _ in range(len(ids)):  # bounded, should before be ignored
        if not page.events:
            break
        seen[:0] = [e.id for e in page.events]
        page = await broadcaster.history(
            channel, limit=4, before=page.events[0].id
        )
        assert page.found, "paging back lost its place"
    assert seen == ids, "paging back skipped or repeated events"
    page = await broadcaster.history(
        channel, limit=10, after=ids[0], before=ids[5]
    )
    assert page.found and [e.id for e in page.events] == ids[1:5]
    page = await broadcaster.history(
        channel, limit=2, after=ids[0], before=ids[5]
    )
    assert [e.id for e in page.events] == ids[1:3], (
        "after and before must return the oldest events between them"
    )
    for after, before in (
        (ids[2], ids[3]),
        (ids[3], ids[3]),
        (ids[4], ids[1]),
    ):
        page = await broadcaster.history(
            channel, limit=10, after=after, before=before
        )
        assert page.found and page.events == [], (after, before, page)
    for garbage in (*_GARBAGE_IDS, f"{ids[0]}\n"):
        bounds: tuple[tuple[str | None, str], ...] = (
            (None, garbage),
            (ids[0], garbage),
        )
        for low, high in bounds:
            page = await broadcaster.history(
                channel, limit=10, after=low, before=high
            )
            assert not page.found and page.events == [], (
                f"garbage id {garbage!r} was found as before"
            )
        page = await broadcaster.history(
            channel, limit=10, after=garbage, before=ids[5]
        )
        assert not page.found and page.events == [], (
            f"garbage id {garbage!r} was found as after"
        )
    page = await broadcaster.history(
        _channel("never"), limit=10, before=ids[5]
    )
    assert not page.found, "an id of another channel was found"


async def check_presence_counts_connections(
    broadcaster: Presence,
) -> None:
    """Presence lists distinct users, counting each user's connections."""
    channel = _channel("presence")
    alice, bob = {"id": "a", "name": "alice"}, {"id": "b", "name": "bob"}
    await broadcaster.presence_add(channel, alice)
    await broadcaster.presence_add(channel, alice)
    await broadcaster.presence_add(channel, bob)
    info = await broadcaster.presence(channel, limit=10)
    assert info.count == 2
    assert sorted(u["name"] for u in info.users) == ["alice", "bob"]
    assert len((await broadcaster.presence(channel, limit=1)).users) == 1
    await broadcaster.presence_remove(channel, alice)
    assert (await broadcaster.presence(channel, limit=10)).count == 2
    await broadcaster.presence_remove(channel, alice)
    await broadcaster.presence_remove(channel, bob)
    await broadcaster.presence_remove(channel, bob)  # extra: harmless
    assert (await broadcaster.presence(channel, limit=10)).count == 0


async def check_unsubscribe_stops_delivery(broadcaster: Broker) -> None:
    """Leaving ``subscribe`` ends delivery; a new subscription works."""
    channel = _channel("unsubscribe")
    async with broadcaster.subscribe(channel) as subscription:
        pass
    await broadcaster.publish(channel, '{"n":1}')
    assert [e async for e in subscription] == []
    async with broadcaster.subscribe(channel) as again:
        await broadcaster.publish(channel, '{"n":2}')
        (event,) = await _take(again, 1)
        assert event.payload == '{"n":2}'


async def check_local_subscriptions_are_independent(
    broadcaster: Broker,
) -> None:
    """Several subscriptions of one channel in one process are separate.

    Each gets every event; one that joins late gets the events published
    after it; ending one leaves the others receiving. (A backend that
    subscribes once per channel, as :class:`Subscribers` does, must still
    count its local subscriptions right.)
    """
    channel = _channel("local")
    async with broadcaster.subscribe(channel) as first:
        async with broadcaster.subscribe(channel) as second:
            ids = await _publish_many(broadcaster, channel, 3)
            for subscription in (first, second):
                got = [e.id for e in await _take(subscription, 3)]
                assert got == ids, "a local subscription missed events"
            async with broadcaster.subscribe(channel) as late:
                ids = await _publish_many(broadcaster, channel, 2)
                for subscription in (first, second, late):
                    got = [e.id for e in await _take(subscription, 2)]
                    assert got == ids, "a late subscription got other events"
            assert [e async for e in late] == [], "ended, yet delivered"
        ids = await _publish_many(broadcaster, channel, 2)
        got = [e.id for e in await _take(first, 2)]
        assert got == ids, "ending one subscription stopped another"
        assert [e async for e in second] == [], "ended, yet delivered"


async def check_presence_lists_up_to_the_limit(
    broadcaster: Presence,
) -> None:
    """``count`` is exact; ``users`` are distinct, at most ``limit``."""
    channel = _channel("presence-limit")
    users = [{"id": f"u{i}", "name": f"user {i}"} for i in range(5)]
    for user in users:
        await broadcaster.presence_add(channel, user)
    await broadcaster.presence_add(channel, users[0])  # a second tab
    info = await broadcaster.presence(channel, limit=3)
    assert info.count == 5, f"count {info.count}, expected 5 users"
    assert len(info.users) == 3, "limit not applied"
    listed = [(u["id"], u["name"]) for u in info.users]
    assert len(set(listed)) == 3, f"users listed twice: {listed}"
    known = {(u["id"], u["name"]) for u in users}
    assert set(listed) <= known, f"unknown users listed: {listed}"
    info = await broadcaster.presence(channel, limit=10)
    assert sorted(u["id"] for u in info.users) == [u["id"] for u in users]
    for user in (*users, users[0]):
        await broadcaster.presence_remove(channel, user)
    info = await broadcaster.presence(channel, limit=10)
    assert info.count == 0 and info.users == [], info


async def check_presence_channels_are_separate(
    broadcaster: Presence,
) -> None:
    """Presence of one channel says nothing of another."""
    a, b = _channel("presence-a"), _channel("presence-b")
    alice, bob = {"id": "a", "name": "alice"}, {"id": "b", "name": "bob"}
    await broadcaster.presence_add(a, alice)
    await broadcaster.presence_add(b, bob)
    await broadcaster.presence_remove(b, alice)  # never added: harmless
    info = await broadcaster.presence(a, limit=10)
    assert [u["id"] for u in info.users] == ["a"] and info.count == 1, info
    await broadcaster.presence_remove(a, alice)
    info = await broadcaster.presence(b, limit=10)
    assert [u["id"] for u in info.users] == ["b"] and info.count == 1, info
    await broadcaster.presence_remove(b, bob)
    assert (await broadcaster.presence(b, limit=10)).count == 0
    never = await broadcaster.presence(_channel("never"), limit=10)
    assert never.count == 0 and never.users == []


BROKER_CHECKS: tuple[BrokerCheck, ...] = (
    check_publish_reaches_subscribers,
    check_order_is_the_same_for_everyone,
    check_channels_are_separate,
    check_ephemeral_events_skip_history,
    check_history_and_recovery,
    check_history_pages_backwards,
    check_edits_and_deletes_are_stored_verbatim,
    check_unsubscribe_stops_delivery,
    check_local_subscriptions_are_independent,
)
"""The checks of a :class:`~sanic_chat.backends.base.Broker`."""

PRESENCE_CHECKS: tuple[PresenceCheck, ...] = (
    check_presence_counts_connections,
    check_presence_lists_up_to_the_limit,
    check_presence_channels_are_separate,
)
"""The checks of a :class:`~sanic_chat.backends.base.Presence`."""

BROADCASTER_CHECKS: tuple[Check, ...] = (*BROKER_CHECKS, *PRESENCE_CHECKS)
"""Every conformance check of the required parts, to parametrize over."""


def _receipts(broadcaster: Broker) -> Receipts:
    part = receipts_of(broadcaster)
    assert part is not None, "the broadcaster keeps no read receipts"
    return part


async def check_receipts_never_move_backwards(broadcaster: Broker) -> None:
    """A mark moves forward only; an older or equal id changes nothing."""
    receipts = _receipts(broadcaster)
    channel = _channel("marks")
    first, second, third = await _publish_many(broadcaster, channel, 3)
    assert await receipts.mark_read(channel, "u", second) is True
    assert await receipts.mark_read(channel, "u", first) is False, (
        "an older id moved the mark backwards"
    )
    assert await receipts.mark_read(channel, "u", second) is False
    assert await receipts.receipts(channel, ["u"]) == {"u": second}
    assert await receipts.mark_read(channel, "u", third) is True
    assert await receipts.receipts(channel, ["u", "v"]) == {"u": third}
    # Concurrent marks: the newest wins, whatever the order they land in.
    ids = await _publish_many(broadcaster, channel, 6)
    await asyncio.gather(
        *(receipts.mark_read(channel, "w", i) for i in reversed(ids))
    )
    assert await receipts.receipts(channel, ["w"]) == {"w": ids[-1]}


async def check_receipts_refuse_ids_not_in_history(
    broadcaster: Broker,
) -> None:
    """Garbage ids and another channel's ids are refused (``None``)."""
    receipts = _receipts(broadcaster)
    channel, other = _channel("mine"), _channel("other")
    (mine,) = await _publish_many(broadcaster, channel, 1)
    # Ids are unique within a channel only: another's may equal ours.
    theirs = await _publish_many(broadcaster, other, 3)
    for bad in (*_GARBAGE_IDS, *(i for i in theirs if i != mine)):
        assert await receipts.mark_read(channel, "u", bad) is None, (
            f"{bad!r} was accepted as an id of the channel"
        )
    assert await receipts.receipts(channel, ["u"]) == {}
    assert await receipts.mark_read(channel, "u", mine) is True


async def check_receipts_are_per_channel_and_user(
    broadcaster: Broker,
) -> None:
    """Marks of one user or channel never show in another's."""
    receipts = _receipts(broadcaster)
    one, two = _channel("one"), _channel("two")
    a = await _publish_many(broadcaster, one, 2)
    b = await _publish_many(broadcaster, two, 2)
    assert await receipts.mark_read(one, "x", a[0])
    assert await receipts.mark_read(one, "y", a[1])
    assert await receipts.mark_read(two, "x", b[1])
    assert await receipts.receipts(one, ["x", "y"]) == {"x": a[0], "y": a[1]}
    assert await receipts.receipts(two, ["x", "y"]) == {"x": b[1]}
    assert await receipts.receipts(_channel("none"), ["x"]) == {}


async def check_read_state_counts_unread(broadcaster: Broker) -> None:
    """``read_state``: the mark and the stored events after it."""
    receipts = _receipts(broadcaster)
    channel = _channel("unread")
    assert await receipts.read_state(channel, "u", limit=10) == ReadState(
        None, 0
    )
    ids = await _publish_many(broadcaster, channel, 5)
    assert await receipts.read_state(channel, "u", limit=10) == ReadState(
        None, 5
    )
    assert await receipts.read_state(channel, "u", limit=3) == ReadState(
        None, 3
    )
    await receipts.mark_read(channel, "u", ids[1])
    assert await receipts.read_state(channel, "u", limit=10) == ReadState(
        ids[1], 3
    )
    await receipts.mark_read(channel, "u", ids[4])
    assert await receipts.read_state(channel, "u", limit=10) == ReadState(
        ids[4], 0
    )


RECEIPTS_CHECKS: tuple[BrokerCheck, ...] = (
    check_receipts_never_move_backwards,
    check_receipts_refuse_ids_not_in_history,
    check_receipts_are_per_channel_and_user,
    check_read_state_counts_unread,
)
"""The checks of the optional :class:`~sanic_chat.backends.base.Receipts`
part, for a broker that keeps read receipts (history size of at least
10)."""


async def check_receipts_shared(first: Broker, second: Broker) -> None:
    """Two processes' instances of one backend share every mark.

    Args:
        first: A connected instance.
        second: Another connected instance on the same store (a second
            worker's).
    """
    a, b = _receipts(first), _receipts(second)
    channel = _channel("shared")
    ids = await _publish_many(first, channel, 3)
    assert await a.mark_read(channel, "u", ids[1]) is True
    assert await b.receipts(channel, ["u"]) == {"u": ids[1]}, (
        "a mark made by one process is not seen by the other"
    )
    assert await b.mark_read(channel, "u", ids[0]) is False, (
        "another process moved the mark backwards"
    )
    assert await b.read_state(channel, "u", limit=10) == ReadState(ids[1], 1)


def _refs(broadcaster: Broker) -> tuple[Idempotency, str]:
    part = idempotency_of(broadcaster)
    assert part is not None, "the broadcaster keeps no refs"
    return part, f"conformance-{secrets.token_hex(4)}"


async def check_refs_are_claimed_then_settled(broadcaster: Broker) -> None:
    """A ref is claimed once; then pending; then its id; release is moot."""
    refs, user = _refs(broadcaster)
    assert await refs.claim(user, "r1", 30) is None
    assert await refs.claim(user, "r1", 30) == PENDING, (
        "a second claim of an open one won too"
    )
    await refs.settle(user, "r1", "id-1", 30)
    assert await refs.claim(user, "r1", 30) == "id-1"
    await refs.release(user, "r1")  # a settled ref is not released
    assert await refs.claim(user, "r1", 30) == "id-1"


async def check_released_refs_can_be_claimed_again(
    broadcaster: Broker,
) -> None:
    """A failed publish releases its claim: the resend may publish."""
    refs, user = _refs(broadcaster)
    assert await refs.claim(user, "r", 30) is None
    await refs.release(user, "r")
    assert await refs.claim(user, "r", 30) is None


async def check_concurrent_claims_have_one_winner(
    broadcaster: Broker,
) -> None:
    """Of many claims of one ref at once, exactly one wins."""
    refs, user = _refs(broadcaster)
    results = await asyncio.gather(
        *(refs.claim(user, "same", 30) for _ in range(20))
    )
    assert results.count(None) == 1, f"{results.count(None)} claims won"
    assert results.count(PENDING) == 19


async def check_refs_are_per_user(broadcaster: Broker) -> None:
    """One ref of two users are two refs, however the ids are spelt."""
    refs, user = _refs(broadcaster)
    assert await refs.claim(user + "a", "r", 30) is None
    assert await refs.claim(user + "b", "r", 30) is None
    await refs.settle(user + "a", "r", "id-a", 30)
    assert await refs.claim(user + "b", "r", 30) == PENDING
    assert await refs.claim(f"{user}:x", "y", 30) is None
    assert await refs.claim(user, "x:y", 30) is None, (
        "user 'u:x' ref 'y' collided with user 'u' ref 'x:y'"
    )


async def check_refs_expire(broadcaster: Broker) -> None:
    """A claim expires after its lease, a settled ref after its ttl."""
    refs, user = _refs(broadcaster)
    assert await refs.claim(user, "lease", 0.2) is None
    await refs.settle(user, "ttl", "id", 0.2)
    assert await refs.claim(user, "ttl", 30) == "id"
    await asyncio.sleep(0.4)
    assert await refs.claim(user, "lease", 30) is None, (
        "a claim outlived its lease"
    )
    assert await refs.claim(user, "ttl", 30) is None, (
        "a settled ref outlived its ttl"
    )


IDEMPOTENCY_CHECKS: tuple[BrokerCheck, ...] = (
    check_refs_are_claimed_then_settled,
    check_released_refs_can_be_claimed_again,
    check_concurrent_claims_have_one_winner,
    check_refs_are_per_user,
    check_refs_expire,
)
"""The checks of the optional
:class:`~sanic_chat.backends.base.Idempotency` part."""


async def check_idempotency_shared(first: Broker, second: Broker) -> None:
    """Two processes' instances of one backend share every ref.

    Args:
        first: A connected instance.
        second: Another connected instance on the same store (a second
            worker's).
    """
    a, user = _refs(first)
    b, _ = _refs(second)
    assert await a.claim(user, "r", 30) is None
    assert await b.claim(user, "r", 30) == PENDING, (
        "another process won a claim already held"
    )
    await a.settle(user, "r", "id-1", 30)
    assert await b.claim(user, "r", 30) == "id-1", (
        "a ref settled by one process is not seen by the other"
    )


async def _run(
    checks: Sequence[Callable[[_Part], Awaitable[None]]],
    factory: Callable[[], _Part],
) -> None:
    for check in checks:
        backend = factory()
        await backend.connect()
        try:
            await check(backend)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__}: {exc}") from exc
        finally:
            await backend.disconnect()


async def check_broadcaster(
    factory: Callable[[], Broadcaster],
) -> None:
    """Run every check against fresh broadcasters from ``factory``.

    Raises:
        AssertionError: The first check that fails, naming it.
    """
    await _run(BROADCASTER_CHECKS, factory)


async def check_broker(factory: Callable[[], Broker]) -> None:
    """Run :data:`BROKER_CHECKS` against fresh brokers from ``factory``.

    Raises:
        AssertionError: The first check that fails, naming it.
    """
    await _run(BROKER_CHECKS, factory)


async def check_receipts(factory: Callable[[], Broker]) -> None:
    """Run :data:`RECEIPTS_CHECKS` against fresh brokers from ``factory``.

    Raises:
        AssertionError: The first check that fails, naming it.
    """
    await _run(RECEIPTS_CHECKS, factory)


async def check_idempotency(factory: Callable[[], Broker]) -> None:
    """Run :data:`IDEMPOTENCY_CHECKS` against fresh brokers from ``factory``.

    Raises:
        AssertionError: The first check that fails, naming it.
    """
    await _run(IDEMPOTENCY_CHECKS, factory)


async def check_presence(factory: Callable[[], Presence]) -> None:
    """Run :data:`PRESENCE_CHECKS` against fresh parts from ``factory``.

    Each is connected first and disconnected after (a no-op for a
    presence part without a connection).

    Raises:
        AssertionError: The first check that fails, naming it.
    """
    await _run(PRESENCE_CHECKS, factory)
