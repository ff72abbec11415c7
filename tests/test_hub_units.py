"""Unit tests of the hub's parts: no sockets, no server.

The rooms, the registry, the watchdog and the control channel are driven
with plain function calls on small fake connections that record what
they get; only the membership tests (which await the broadcaster) run
in an event loop, on the in-memory broadcaster.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sanic_chat.backends.base import Event
from sanic_chat.backends.memory import MemoryBroadcaster
from sanic_chat.budget import UnsentBytes
from sanic_chat.config import ChatConfig
from sanic_chat.errors import BroadcasterUnavailable
from sanic_chat.hub import CONTROL_CHANNEL, Hub
from sanic_chat.hub.control import ControlChannel
from sanic_chat.hub.membership import Membership
from sanic_chat.hub.registry import RESERVATION_LIFETIME, Registry
from sanic_chat.hub.room import BATCH_BYTES, SMALL_ROOM, Room
from sanic_chat.hub.watchdog import Watchdog
from sanic_chat.identity import User
from sanic_chat.metrics import Metrics
from sanic_chat.protocol import valid_room
from sanic_chat.session import Expire
from sanic_chat.wire import frame_text, text_frame

ROOM = "lobby"


class FakeSocket:
    def __init__(self) -> None:
        self.buffered_bytes = 0
        self.aborted = False

    def buffered(self) -> int:
        return self.buffered_bytes

    def abort(self) -> None:
        self.aborted = True


class FakeConn:
    """Records what the hub does to a connection."""

    _keys = iter(range(1_000_000))

    def __init__(self, user: str = "u") -> None:
        self.key = f"k{next(self._keys)}"
        self.user = User(user, user.title())
        self.rooms: set[str] = set()
        self.socket = FakeSocket()
        self.sent: list[tuple[str, bytes]] = []  # (how, frame)
        self.overflows: list[str] = []
        self.forgotten: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.keepalives: list[float] = []
        self.sending_since: float | None = None
        self.expiry: Expire | None = None
        self.unsent = 0
        # Replies before which backed_up() answers True once each.
        self.stall_at: set[int] = set()
        self.on_wait: list[Any] = []  # called while a replay waits
        # send_all: whether frames can go straight out, and with slack
        # for presence notices; how many writes it made.
        self.writable = True
        self.slack = True
        self.writes = 0
        self.write_sizes: list[int] = []

    def __repr__(self) -> str:
        return f"<FakeConn {self.key}>"

    # What the room calls.
    def send(self, frame: bytes, room: str) -> None:
        assert room == ROOM
        self.sent.append(("send", frame))

    def offer(self, frame: bytes, room: str) -> None:
        assert room == ROOM
        self.sent.append(("offer", frame))

    def send_all(self, data: bytes, best_effort: bool) -> bool:
        if not self.writable or (best_effort and not self.slack):
            return False
        self.sent.extend(("all", frame) for frame in split_frames(data))
        self.writes += 1
        self.write_sizes.append(len(data))
        return True

    def overflow(self, room: str) -> None:
        self.overflows.append(room)

    # What membership calls.
    def reply(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            frame = text_frame(frame)
        self.sent.append(("reply", frame))

    def forget(self, room: str) -> None:
        self.forgotten.append(room)

    def backed_up(self) -> bool:
        return len(self.sent) in self.stall_at

    async def wait_writable(self) -> None:
        self.stall_at.discard(len(self.sent))
        for action in self.on_wait:
            await action()

    # What the registry and the watchdog call.
    @property
    def closing(self) -> bool:
        return self.closed is not None

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        if self.closed is None:
            self.closed = (code, reason)

    def keepalive(self, now: float) -> None:
        self.keepalives.append(now)

    # Reading back.
    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(frame_text(frame)) for _, frame in self.sent]

    def ids(self) -> list[str]:
        return [t["id"] for t in self.texts() if t.get("type") == "message"]


def split_frames(data: bytes) -> list[bytes]:
    """The server's (unmasked) wire frames that ``data`` joins."""
    frames = []
    while data:
        size, start = data[1] & 0x7F, 2
        if size == 126:
            size, start = int.from_bytes(data[2:4]), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10]), 10
        frames.append(data[: start + size])
        data = data[start + size :]
    return frames


def stored(n: int) -> Event:
    payload = json.dumps({"type": "message", "room": ROOM, "text": f"m{n}"})
    return Event(ROOM, payload, id=str(n))


def notice(origin: FakeConn) -> Event:
    """A presence notice about ``origin`` (its user id is its key)."""
    user = {"id": origin.key, "name": "N"}
    payload = json.dumps({"type": "joined", "room": ROOM, "user": user})
    return Event(ROOM, payload, origin=origin.key)


def about(conn: FakeConn) -> list[str]:
    """Whom the presence notices ``conn`` got are about."""
    return [t["user"]["id"] for t in conn.texts() if t["type"] == "joined"]


def make_room(
    *members: FakeConn, hold_limit: int = 100
) -> tuple[Room, Metrics]:
    metrics = Metrics()
    room = Room(ROOM, hold_limit, metrics)
    for conn in members:
        room.hold(conn)  # type: ignore[arg-type]
        room.admit(conn)  # type: ignore[arg-type]
    return room, metrics


# ----------------------------------------------------------------------
# Room: fan-out


def test_a_room_is_built_and_fans_out_without_an_event_loop() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    a, b = FakeConn(), FakeConn()
    room, metrics = make_room(a, b)
    room.fanout([stored(1)])
    assert a.ids() == b.ids() == ["1"]
    assert metrics.messages_sent == 2


def test_the_hot_path_sends_one_frame_object_to_every_member() -> None:
    conns = [FakeConn() for _ in range(5)]
    room, _ = make_room(*conns)
    room.fanout([stored(7)])
    frames = [c.sent[0][1] for c in conns]
    assert all(c.sent == [("send", frames[0])] for c in conns)
    assert all(f is frames[0] for f in frames)  # built once, shared
    text = json.loads(frame_text(frames[0]))
    assert text == {"type": "message", "room": ROOM, "text": "m7", "id": "7"}


def test_presence_notices_are_offered_to_everyone_but_their_origin() -> None:
    a, b, c = FakeConn(), FakeConn(), FakeConn()
    room, metrics = make_room(a, b, c)
    room.fanout([notice(a)])
    assert a.sent == []
    assert [how for how, _ in b.sent] == ["offer"]
    assert [how for how, _ in c.sent] == ["offer"]
    assert b.texts()[0]["type"] == "joined"
    assert metrics.messages_sent == 0


def test_events_that_arrive_together_go_out_in_one_write_per_member() -> None:
    conns = [FakeConn() for _ in range(3)]
    room, metrics = make_room(*conns)
    room.fanout([stored(1), stored(2), stored(3)])
    for conn in conns:
        assert conn.writes == 1
        assert conn.ids() == ["1", "2", "3"]
        assert {how for how, _ in conn.sent} == {"all"}
    assert metrics.messages_sent == 9


def test_a_member_that_cannot_take_a_run_at_once_gets_it_one_by_one() -> None:
    fast, slow, crowded = FakeConn(), FakeConn(), FakeConn()
    slow.writable = False  # backed up: each frame sent (queued) alone
    crowded.slack = False  # no room for best-effort notices
    outsider = FakeConn()
    room, metrics = make_room(fast, slow, crowded)
    room.fanout([stored(1), notice(outsider), stored(2)])
    assert fast.writes == 1 and [h for h, _ in fast.sent] == ["all"] * 3
    assert [h for h, _ in slow.sent] == ["send", "offer", "send"]
    assert [t["type"] for t in slow.texts()] == [
        "message",
        "joined",
        "message",
    ]
    assert [h for h, _ in crowded.sent] == ["send", "offer", "send"]
    assert metrics.messages_sent == 6  # the two stored events, 3 members


def test_a_member_gets_no_notice_about_itself_in_a_run() -> None:
    a, b = FakeConn(), FakeConn()
    room, _ = make_room(a, b)
    room.fanout([notice(a), stored(1), notice(b)])
    assert about(a) == [b.key] and a.ids() == ["1"]
    assert about(b) == [a.key] and b.ids() == ["1"]
    assert a.writes == b.writes == 1  # its own notice left out of the run


def test_a_long_run_is_written_in_bounded_pieces() -> None:
    a = FakeConn()
    room, _ = make_room(a)
    big = [
        Event(ROOM, json.dumps({"type": "message", "room": ROOM,
                                "text": "x" * 6000}), id=str(n))
        for n in range(8)
    ]  # fmt: skip
    room.fanout(big)
    assert a.ids() == [str(n) for n in range(8)]
    # Runs of at most BATCH_BYTES each (two frames of ~6 KB fit in one).
    assert a.writes == 4
    assert all(size <= BATCH_BYTES for size in a.write_sizes)


def test_events_held_for_a_joiner_keep_their_order_across_a_run() -> None:
    member, joiner = FakeConn(), FakeConn()
    room, _ = make_room(member)
    room.hold(joiner)  # type: ignore[arg-type]
    room.fanout([stored(1), stored(2)])
    assert joiner.sent == []
    room.admit(joiner)  # type: ignore[arg-type]
    assert joiner.ids() == member.ids() == ["1", "2"]


def test_members_join_and_leave_across_the_small_room_size() -> None:
    # A small room keeps its members in a tuple, a larger one in a set:
    # whichever it is, joins, leaves and the fan-out reach the right ones.
    conns = [FakeConn() for _ in range(SMALL_ROOM + 3)]
    room, metrics = make_room(conns[0])
    assert len(room.members) == 1 and conns[0] in room.members
    room, metrics = make_room(*conns)
    assert len(room.members) == len(conns)
    gone = conns[1::2]
    for conn in gone:
        assert room.remove(conn)  # type: ignore[arg-type]
        assert not room.remove(conn)  # type: ignore[arg-type]
    room.fanout([stored(1)])
    kept = conns[0::2]
    assert all(c.ids() == ["1"] for c in kept)
    assert all(c.ids() == [] for c in gone)
    assert metrics.messages_sent == len(kept)
    for conn in kept:
        room.remove(conn)  # type: ignore[arg-type]
    assert room.empty() and len(room.members) == 0
    small, _ = make_room(*conns[:3])
    assert small.remove(conns[1]) and not small.remove(conns[1])  # type: ignore[arg-type]
    small.fanout([stored(2)])
    assert conns[0].ids()[-1] == conns[2].ids()[-1] == "2"
    assert conns[1].ids() == []


def test_resync_goes_to_members_and_not_to_joiners() -> None:
    a, joiner = FakeConn(), FakeConn()
    room, _ = make_room(a)
    room.hold(joiner)  # type: ignore[arg-type]
    room.resync()
    assert a.texts() == [{"type": "resync", "room": ROOM}]
    assert joiner.sent == []


# ----------------------------------------------------------------------
# Room: hold-back and replay de-duplication


def test_events_replayed_and_held_back_are_delivered_once_in_order() -> None:
    other, joiner = FakeConn(), FakeConn()
    room, _ = make_room(other)
    room.hold(joiner)  # type: ignore[arg-type]
    for n in (1, 2, 3):  # live while the joiner's history is read
        room.fanout([stored(n)])
    assert joiner.sent == []
    assert not room.empty()
    # The history read contained 1 and 2 (3 came after it).
    assert room.admit(joiner, ["1", "2"])  # type: ignore[arg-type]
    assert joiner.ids() == ["3"]
    for n in (4, 5):
        room.fanout([stored(n)])
    assert joiner.ids() == ["3", "4", "5"]
    assert other.ids() == ["1", "2", "3", "4", "5"]


def test_replayed_events_that_arrive_live_later_are_skipped_once() -> None:
    # The history read may run ahead of the subscription: events it
    # replayed can still arrive live after the joiner is admitted.
    other, joiner = FakeConn(), FakeConn()
    room, metrics = make_room(other)
    room.hold(joiner)  # type: ignore[arg-type]
    room.fanout([stored(1)])
    room.admit(joiner, ["1", "2", "3"])  # type: ignore[arg-type]
    room.fanout([stored(2)])
    room.fanout([stored(3)])
    assert joiner.ids() == []
    room.fanout([stored(4)])
    room.fanout([stored(5)])
    assert joiner.ids() == ["4", "5"]
    assert other.ids() == ["1", "2", "3", "4", "5"]
    # De-duplication over, the hot path counts every member again.
    before = metrics.messages_sent
    room.fanout([stored(6)])
    assert metrics.messages_sent == before + 2


def test_held_presence_notices_skip_their_origin() -> None:
    joiner, other = FakeConn(), FakeConn()
    room, _ = make_room(other)
    room.hold(joiner)  # type: ignore[arg-type]
    room.fanout([notice(joiner)])  # its own join notice
    room.fanout([notice(other)])
    assert about(other) == [joiner.key]  # not its own
    room.admit(joiner)  # type: ignore[arg-type]
    assert about(joiner) == [other.key]  # not its own
    assert [how for how, _ in joiner.sent] == ["offer"]
    third = FakeConn()
    room.fanout([notice(third)])
    assert about(joiner) == [other.key, third.key]


def test_a_full_hold_back_is_the_joiners_overflow() -> None:
    joiner = FakeConn()
    room, _ = make_room(hold_limit=3)
    room.hold(joiner)  # type: ignore[arg-type]
    for n in range(1, 4):
        room.fanout([stored(n)])
    assert joiner.overflows == []
    room.fanout([stored(4)])
    room.fanout([stored(5)])
    assert joiner.overflows == [ROOM, ROOM]
    # A dropped presence notice is no loss: best-effort anyway.
    room.hold(joiner)  # type: ignore[arg-type]
    for _ in range(3):
        room.fanout([notice(FakeConn())])
    room.fanout([stored(6)])
    assert joiner.overflows == [ROOM, ROOM]
    room.admit(joiner)  # type: ignore[arg-type]
    # The last three kept (two notices, one message), the oldest dropped.
    assert [how for how, _ in joiner.sent] == ["offer", "offer", "send"]
    assert joiner.ids() == ["6"]


def test_a_re_syncing_member_stops_getting_live_events_until_admitted() -> (
    None
):
    a = FakeConn()
    room, _ = make_room(a)
    room.fanout([stored(1)])
    room.hold(a)  # type: ignore[arg-type]
    room.fanout([stored(2)])
    assert a.ids() == ["1"]
    assert a not in room.members
    room.admit(a, ["2"])  # type: ignore[arg-type]
    room.fanout([stored(3)])
    assert a.ids() == ["1", "3"]


def test_remove_tells_membership_and_admit_refuses_the_removed() -> None:
    a, joiner = FakeConn(), FakeConn()
    room, _ = make_room(a)
    room.hold(joiner)  # type: ignore[arg-type]
    assert room.remove(joiner) is False  # type: ignore[arg-type]
    assert room.admit(joiner) is False  # type: ignore[arg-type]
    assert joiner not in room.members
    assert room.remove(a) is True  # type: ignore[arg-type]
    assert room.empty()


def test_add_makes_a_member_at_once_once_and_grows_past_a_tuple() -> None:
    conns = [FakeConn() for _ in range(SMALL_ROOM + 2)]
    room, _ = make_room()
    room.add(conns[0])  # type: ignore[arg-type]
    room.add(conns[0])  # type: ignore[arg-type]
    assert room.members == (conns[0],)
    room.fanout([stored(1)])
    assert conns[0].ids() == ["1"]  # nothing held back: delivered
    for conn in conns[1:]:
        room.add(conn)  # type: ignore[arg-type]
    assert isinstance(room.members, set) and len(room.members) == len(conns)
    room.add(conns[-1])  # type: ignore[arg-type]
    assert len(room.members) == len(conns)
    room.fanout([stored(2)])
    assert all(c.ids()[-1] == "2" for c in conns)


# ----------------------------------------------------------------------
# Registry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_registry_counts_connections_per_user() -> None:
    registry = Registry()
    a1, a2, b = FakeConn("a"), FakeConn("a"), FakeConn("b")
    for conn in (a1, a2, b):
        registry.add(conn)  # type: ignore[arg-type]
    assert registry.connections_of("a") == 2
    assert registry.connections_of("b") == 1
    registry.remove(a1)  # type: ignore[arg-type]
    registry.remove(a1)  # type: ignore[arg-type]  # twice: no effect
    assert registry.connections_of("a") == 1
    registry.remove(a2)  # type: ignore[arg-type]
    assert registry.connections_of("a") == 0
    assert registry.connections == {b}


def test_reservations_count_until_claimed_released_or_lapsed() -> None:
    clock = Clock()
    registry = Registry(clock=clock)
    registry.reserve("a")
    registry.reserve("a")
    assert registry.connections_of("a") == 2
    registry.add(FakeConn("a"))  # type: ignore[arg-type]  # claims one
    assert registry.connections_of("a") == 2
    registry.release("a")  # the other handshake failed
    assert registry.connections_of("a") == 1
    registry.release("a")  # nothing left to release: no effect
    assert registry.connections_of("a") == 1
    registry.reserve("a")
    clock.now += RESERVATION_LIFETIME - 0.1
    assert registry.connections_of("a") == 2
    clock.now += 0.2
    assert registry.connections_of("a") == 1  # lapsed


def test_close_user_closes_only_that_users_open_connections() -> None:
    registry = Registry()
    a1, a2, b = FakeConn("a"), FakeConn("a"), FakeConn("b")
    for conn in (a1, a2, b):
        registry.add(conn)  # type: ignore[arg-type]
    a2.close(1000, "already closing")
    assert registry.close_user("a", "banned") == 1
    assert a1.closed == (1008, "banned")
    assert a2.closed == (1000, "already closing")
    assert b.closed is None


async def test_close_all_closes_in_batches_then_aborts_the_stragglers() -> (
    None
):
    registry = Registry()
    conns = [FakeConn() for _ in range(4)]
    for conn in conns:
        registry.add(conn)  # type: ignore[arg-type]
    polite = conns[0]
    original = polite.close

    def close_and_go(code: int, reason: str, *, flush: bool = False) -> None:
        original(code, reason, flush=flush)
        registry.remove(polite)  # type: ignore[arg-type]

    polite.close = close_and_go  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await registry.close_all(1012, "restart", wait=0.01, spread=0.02)
    assert all(c.closed == (1012, "restart") for c in conns)
    assert not polite.socket.aborted
    assert all(c.socket.aborted for c in conns[1:])


# ----------------------------------------------------------------------
# Watchdog


def make_watchdog(
    conns: list[FakeConn], limit: int = 1 << 30, timeout: float = 30.0
) -> tuple[Watchdog, UnsentBytes, Metrics]:
    unsent = UnsentBytes(limit)
    metrics = Metrics()
    dog = Watchdog(conns, unsent, timeout, metrics, shed_after=1.0)  # type: ignore[arg-type]
    return dog, unsent, metrics


@pytest.mark.logs_errors
async def test_a_sweep_that_fails_does_not_end_the_sweeping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, expired = FakeConn(), FakeConn()
    failures = [RuntimeError("a broken socket")]

    def buffered() -> int:
        if failures:
            raise failures.pop()
        return 0

    broken.socket.buffered = buffered  # type: ignore[method-assign]
    expired.expiry = Expire(1.0)  # long past
    dog, _, _ = make_watchdog([broken, expired], timeout=0.1)
    dog.start()
    try:
        async with asyncio.timeout(5):
            while expired.closed is None:
                await asyncio.sleep(0.02)
    finally:
        task = dog.stop()
        assert task is not None
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert expired.closed == (1008, "token expired")
    assert "watchdog sweep failed" in caplog.text


def test_the_sweep_measures_socket_buffers() -> None:
    a, b = FakeConn(), FakeConn()
    a.socket.buffered_bytes, b.socket.buffered_bytes = 300, 45
    dog, unsent, _ = make_watchdog([a, b])
    dog.sweep(0.0)
    assert unsent.buffered == 345


def test_the_sweep_closes_connections_whose_identity_expired() -> None:
    expired, later, never = FakeConn(), FakeConn(), FakeConn()
    expired.expiry = Expire(1_000.0)
    later.expiry = Expire(1_002.0, 4003, "gone")
    dog, _, _ = make_watchdog([expired, later, never])
    dog.sweep(0.0, wall=999.5)
    assert expired.closed is later.closed is None
    dog.sweep(1.0, wall=1_000.0)
    assert expired.closed == (1008, "token expired")
    assert expired.expiry is None
    assert later.closed is None
    dog.sweep(3.0, wall=1_002.5)
    assert later.closed == (4003, "gone")
    assert never.closed is None


def test_keepalive_and_send_timeout_are_checked_every_few_seconds() -> None:
    stuck, fine = FakeConn(), FakeConn()
    dog, _, metrics = make_watchdog([stuck, fine], timeout=30.0)
    assert dog.every == 5.0
    start = time.monotonic() + 100
    dog.sweep(start)
    assert fine.keepalives == [start]
    dog.sweep(start + 1)  # too soon for another check
    assert fine.keepalives == [start]
    stuck.sending_since = start
    dog.sweep(start + 6)
    assert fine.keepalives == [start, start + 6]
    assert stuck.closed is None  # 6 s stuck: under the timeout
    dog.sweep(start + 31)
    assert stuck.closed == (1013, "slow consumer")
    assert fine.closed is None
    assert metrics.slow_consumer_disconnects == 1


def test_over_budget_the_largest_stuck_clients_are_shed_first() -> None:
    now = 500.0
    big, small, reading, new = (FakeConn() for _ in range(4))
    for conn, size in ((big, 600), (small, 300), (reading, 890), (new, 800)):
        conn.unsent = conn.socket.buffered_bytes = size
    big.sending_since = small.sending_since = now - 2
    new.sending_since = now - 0.5  # refused data for under shed_after
    dog, unsent, metrics = make_watchdog(
        [small, reading, big, new], limit=2000
    )
    dog.sweep(now)  # 2590 unsent, 2000 allowed: shedding big is enough
    assert big.closed == (1013, "slow consumer") and big.socket.aborted
    assert small.closed is None and reading.closed is None
    assert new.closed is None
    assert unsent.buffered == 1990
    assert metrics.slow_consumer_disconnects == 1


# ----------------------------------------------------------------------
# Control channel


def test_no_client_can_name_the_control_channel() -> None:
    assert not valid_room(CONTROL_CHANNEL)


def test_a_disconnect_notice_closes_the_users_connections_here() -> None:
    registry = Registry()
    a, b = FakeConn("a"), FakeConn("b")
    registry.add(a)  # type: ignore[arg-type]
    registry.add(b)  # type: ignore[arg-type]
    control = ControlChannel(MemoryBroadcaster(), registry)
    control.handle(json.dumps({"op": "other"}))
    assert a.closed is None
    control.handle(
        json.dumps({"op": "disconnect", "user": "a", "reason": "x"})
    )
    assert a.closed == (1008, "x")
    assert b.closed is None


async def test_disconnect_user_reaches_the_other_workers_hub() -> None:
    broadcaster = MemoryBroadcaster()
    config = ChatConfig()
    here, there = Hub(broadcaster, config), Hub(broadcaster, config)
    mine, theirs = FakeConn("a"), FakeConn("a")
    here.add(mine)  # type: ignore[arg-type]
    there.add(theirs)  # type: ignore[arg-type]
    there.start()
    try:
        await settle()  # the other worker subscribes to the channel
        async with asyncio.timeout(5):
            assert await here.disconnect_user("a", "bye") == 1
            assert mine.closed == (1008, "bye")
            while theirs.closed is None:
                await asyncio.sleep(0.01)
        assert theirs.closed == (1008, "bye")
    finally:
        await there.stop()


# ----------------------------------------------------------------------
# Membership: joins with recovery, on the in-memory broadcaster


@pytest.fixture
def config() -> ChatConfig:
    return dataclasses.replace(ChatConfig(), history_size=10)


@pytest.fixture
def broadcaster() -> MemoryBroadcaster:
    return MemoryBroadcaster(history_size=10)


async def publish(broadcaster: MemoryBroadcaster, n: int) -> str:
    payload = json.dumps({"type": "message", "room": ROOM, "text": f"m{n}"})
    event = await broadcaster.publish(ROOM, payload)
    assert event.id is not None
    return event.id


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_join_with_since_replays_then_goes_live_without_duplicates(
    config: ChatConfig, broadcaster: MemoryBroadcaster
) -> None:
    membership = Membership(broadcaster, config, Metrics())
    try:
        first = FakeConn()
        await membership.join(first, ROOM)  # type: ignore[arg-type]
        since = await publish(broadcaster, 1)
        ids = [await publish(broadcaster, n) for n in (2, 3)]
        await settle()  # delivered to ``first``
        rejoiner = FakeConn()
        await membership.join(rejoiner, ROOM, since)  # type: ignore[arg-type]
        joined = rejoiner.texts()[0]
        assert joined["type"] == "joined" and joined["recovered"] is True
        ids.append(await publish(broadcaster, 4))
        await settle()
        assert rejoiner.ids() == ids
        assert first.ids() == [since, *ids]
    finally:
        for task in membership.stop():
            await asyncio.gather(task, return_exceptions=True)


async def test_events_published_while_a_replay_waits_are_not_lost(
    config: ChatConfig, broadcaster: MemoryBroadcaster
) -> None:
    """A replay paused for a slow client keeps the live events held."""
    membership = Membership(broadcaster, config, Metrics())
    try:
        first = FakeConn()
        await membership.join(first, ROOM)  # type: ignore[arg-type]
        since = await publish(broadcaster, 1)
        replayed = [await publish(broadcaster, n) for n in (2, 3)]
        await settle()  # delivered to ``first``
        live: list[str] = []

        async def meanwhile() -> None:
            live.append(await publish(broadcaster, 4))
            await settle()

        slow = FakeConn()
        slow.stall_at = {2}  # after ``joined`` and one replayed message
        slow.on_wait.append(meanwhile)
        await membership.join(slow, ROOM, since)  # type: ignore[arg-type]
        assert live, "the replay never waited"
        assert slow.ids() == replayed + live
    finally:
        for task in membership.stop():
            await asyncio.gather(task, return_exceptions=True)


async def test_a_room_needs_no_task_and_goes_with_its_last_member(
    config: ChatConfig, broadcaster: MemoryBroadcaster
) -> None:
    membership = Membership(broadcaster, config, Metrics())
    before = asyncio.all_tasks()
    conn = FakeConn()
    await membership.join(conn, ROOM)  # type: ignore[arg-type]
    assert set(membership.rooms) == {ROOM}
    assert ROOM in broadcaster._subscribers
    assert asyncio.all_tasks() == before  # pushed to: no task of its own
    sent = await publish(broadcaster, 1)
    await settle()
    assert conn.ids() == [sent]
    await membership.leave(conn, ROOM)  # type: ignore[arg-type]
    assert membership.rooms == {}
    assert conn.texts()[-1]["type"] == "left"
    assert ROOM not in broadcaster._subscribers
    assert membership.stop() == []  # nothing left running


def test_held_events_up_to_the_clients_last_one_are_not_sent_again() -> None:
    # The subscription may lag behind the history read: events at or
    # before ``since`` can still be held for the joiner.
    joiner = FakeConn()
    room, _ = make_room()
    room.hold(joiner)  # type: ignore[arg-type]
    for n in (1, 2, 3, 4):
        room.fanout([stored(n)])
    assert room.admit(joiner, ["2", "3"], since="1")  # type: ignore[arg-type]
    assert joiner.ids() == ["4"]
    room.fanout([stored(5)])
    assert joiner.ids() == ["4", "5"]


def test_held_events_up_to_since_are_dropped_when_nothing_was_replayed() -> (
    None
):
    joiner = FakeConn()
    room, _ = make_room()
    room.hold(joiner)  # type: ignore[arg-type]
    for n in (1, 2, 3):
        room.fanout([stored(n)])
    room.fanout([notice(FakeConn())])
    assert room.admit(joiner, since="2")  # type: ignore[arg-type]
    assert joiner.ids() == ["3"]
    assert [how for how, _ in joiner.sent] == ["send", "offer"]


class SlowHistory(MemoryBroadcaster):
    """History reads that take a moment, as over a network."""

    async def history(self, channel: str, **kwargs: Any) -> Any:
        await settle()
        return await super().history(channel, **kwargs)


async def test_a_rejoin_while_the_subscription_lags_gets_no_duplicates(
    config: ChatConfig,
) -> None:
    broadcaster = SlowHistory(history_size=10)
    membership = Membership(broadcaster, config, Metrics())
    try:
        first = FakeConn()
        await membership.join(first, ROOM)  # type: ignore[arg-type]
        # Not yet delivered by the room's task when the rejoin starts: it
        # delivers them while the history is read.
        since = await publish(broadcaster, 1)
        ids = [await publish(broadcaster, n) for n in (2, 3)]
        rejoiner = FakeConn()
        await membership.join(rejoiner, ROOM, since)  # type: ignore[arg-type]
        ids.append(await publish(broadcaster, 4))
        await settle()
        assert rejoiner.ids() == ids
        assert first.ids() == [since, *ids]
    finally:
        for task in membership.stop():
            await asyncio.gather(task, return_exceptions=True)


async def test_a_rejoin_with_nothing_missed_gets_no_duplicates(
    config: ChatConfig,
) -> None:
    broadcaster = SlowHistory(history_size=10)
    membership = Membership(broadcaster, config, Metrics())
    try:
        first = FakeConn()
        await membership.join(first, ROOM)  # type: ignore[arg-type]
        for n in (1, 2):
            await publish(broadcaster, n)
        since = await publish(broadcaster, 3)  # the client has them all
        rejoiner = FakeConn()
        await membership.join(rejoiner, ROOM, since)  # type: ignore[arg-type]
        assert rejoiner.texts()[0]["recovered"] is True
        new = await publish(broadcaster, 4)
        await settle()
        assert rejoiner.ids() == [new]
    finally:
        for task in membership.stop():
            await asyncio.gather(task, return_exceptions=True)


class ForeignBroker(MemoryBroadcaster):
    """A broker whose subscription is its own async iterator, not ours."""

    def subscribe(self, channel: str) -> Any:
        inner = super().subscribe(channel)

        @contextlib.asynccontextmanager
        async def foreign() -> AsyncIterator[AsyncIterator[Any]]:
            async with inner as subscription:

                async def events() -> AsyncIterator[Any]:
                    async for item in subscription:
                        yield item

                yield events()

        return foreign()


async def test_a_broker_with_its_own_iterator_is_read_by_a_task(
    config: ChatConfig,
) -> None:
    broadcaster = ForeignBroker(history_size=10)
    membership = Membership(broadcaster, config, Metrics())
    conn = FakeConn()
    await membership.join(conn, ROOM)  # type: ignore[arg-type]
    tasks = [t for t in asyncio.all_tasks() if t.get_name().endswith(ROOM)]
    assert len(tasks) == 1
    sent = await publish(broadcaster, 1)
    await settle()
    assert conn.ids() == [sent]
    await membership.leave(conn, ROOM)  # type: ignore[arg-type]
    await asyncio.gather(*tasks, return_exceptions=True)
    assert tasks[0].cancelled()
    for task in membership.stop():
        await task
    assert ROOM not in broadcaster._subscribers


async def test_a_subscription_lost_and_back_tells_members_to_resync(
    config: ChatConfig, broadcaster: MemoryBroadcaster
) -> None:
    membership = Membership(broadcaster, config, Metrics())
    try:
        conn = FakeConn()
        await membership.join(conn, ROOM)  # type: ignore[arg-type]
        broadcaster._subscribers.close(BroadcasterUnavailable("lost"))
        async with asyncio.timeout(2):  # after the backoff's first pause
            while conn.texts()[-1] != {"type": "resync", "room": ROOM}:
                await asyncio.sleep(0.01)
        assert not [
            t for t in asyncio.all_tasks() if t.get_name().endswith(ROOM)
        ], "the retry task outlived the failure"
        sent = await publish(broadcaster, 1)
        await settle()
        assert conn.ids() == [sent]
    finally:
        for task in membership.stop():
            await asyncio.gather(task, return_exceptions=True)


class GatedBroker(MemoryBroadcaster):
    """Subscribing waits for ``gate`` (a slow first subscribe)."""

    def __init__(self) -> None:
        super().__init__(history_size=10)
        self.gate = asyncio.Event()

    def subscribe(self, channel: str) -> Any:
        inner = super().subscribe(channel)

        @contextlib.asynccontextmanager
        async def gated() -> AsyncIterator[Any]:
            await self.gate.wait()
            async with inner as subscription:
                yield subscription

        return gated()


async def test_a_first_joiner_cancelled_while_subscribing_leaves_no_one_stuck(
    config: ChatConfig,
) -> None:
    broadcaster = GatedBroker()
    membership = Membership(broadcaster, config, Metrics())
    try:
        first, second = FakeConn(), FakeConn()
        subscribing = asyncio.create_task(
            membership.join(first, ROOM)  # type: ignore[arg-type]
        )
        await settle()
        waiting = asyncio.create_task(
            membership.join(second, ROOM)  # type: ignore[arg-type]
        )
        await settle()
        subscribing.cancel()
        await asyncio.gather(subscribing, return_exceptions=True)
        broadcaster.gate.set()
        async with asyncio.timeout(2):
            await waiting
        assert second.texts()[0]["type"] == "joined"
        sent = await publish(broadcaster, 1)
        await settle()
        assert second.ids() == [sent] and first.ids() == []
    finally:
        for task in membership.stop():
            await asyncio.gather(task, return_exceptions=True)
    assert ROOM not in broadcaster._subscribers


async def test_an_unsubscribe_that_needs_an_await_is_kept_and_awaited(
    config: ChatConfig, broadcaster: MemoryBroadcaster
) -> None:
    """A broker's own unsubscribe (at its server) runs in a short task."""
    unsubscribed: list[str] = []

    async def on_last(channel: str) -> None:
        await asyncio.sleep(0.01)
        unsubscribed.append(channel)

    broadcaster._subscribers._on_last = on_last
    membership = Membership(broadcaster, config, Metrics())
    conn = FakeConn()
    await membership.join(conn, ROOM)  # type: ignore[arg-type]
    await membership.leave(conn, ROOM)  # type: ignore[arg-type]
    assert ROOM not in broadcaster._subscribers and unsubscribed == []
    [leaving] = membership.stop()  # still running: handed over
    await leaving
    assert unsubscribed == [ROOM]
    assert membership.stop() == []
