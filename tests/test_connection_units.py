"""Unit tests of a connection's writes, queues and keepalive: no sockets.

:class:`Connection` is driven with a fake socket whose write buffer and
flow control the test sets by hand; :class:`Outbox` is a plain object.
Frames are the wire bytes the hub would pass (:func:`text_frame`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sanic_chat.budget import UnsentBytes
from sanic_chat.config import SlowConsumerPolicy
from sanic_chat.connection import Connection
from sanic_chat.identity import User
from sanic_chat.metrics import Metrics
from sanic_chat.outbox import Outbox
from sanic_chat.protocol import lagged
from sanic_chat.transport.base import Keepalive, SocketBase
from sanic_chat.wire import text_frame


class _NothingBuffered:
    """A socket whose write buffer is always empty (for :class:`Outbox`)."""

    def buffered(self) -> int:
        return 0


class FakeSocket(SocketBase):
    """A socket whose flow control and write buffer the test controls.

    ``can_write`` cleared means backed up (the transport's high-water
    mark); ``buffer`` is what its write buffer holds.
    """

    def __init__(self, *, ping_interval: float | None = None) -> None:
        super().__init__(
            asyncio.Event(),
            self._write_now,
            close_timeout=10.0,
            keepalive=Keepalive(ping_interval, 10.0, now=0.0),
        )
        self.can_write.set()
        self.written: list[bytes] = []
        self.buffer = 0
        self.pings = 0
        self.closed_with: tuple[int, str] | None = None

    def _write_now(self, data: bytes) -> None:
        self.written.append(data)

    def data(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data

    @property
    def open(self) -> bool:
        return self.closed_with is None and not self._gone

    @property
    def close_received(self) -> int | None:
        return None

    def buffered(self) -> int:
        return self.buffer

    def write(self, data: bytes) -> None:
        if self.open:
            self.written.append(data)

    def start_closing(self, code: int = 1000, reason: str = "") -> None:
        if self.closed_with is None:
            self.closed_with = (code, reason)
        self._end()
        self._not_open()

    def abort(self) -> None:
        self._gone = True
        self._end()
        self._not_open()

    async def wait_closed(self) -> None:
        pass

    def _send_ping(self) -> None:
        self.pings += 1

    def pong(self) -> None:
        """What the transport does when the client's pong arrives."""
        self._keepalive.answered()

    def _pause_reading(self) -> None:
        pass

    def _resume_reading(self) -> None:
        pass

    def pause(self) -> None:
        self.can_write.clear()

    def resume(self) -> None:
        self.can_write.set()


def connection(
    socket: FakeSocket | None = None,
    *,
    queue_size: int = 4,
    policy: SlowConsumerPolicy = "close",
    max_unsent_bytes: int = 1 << 20,
    budget: UnsentBytes | None = None,
) -> tuple[Connection, FakeSocket, Metrics]:
    socket = socket or FakeSocket()
    metrics = Metrics()
    conn = Connection(
        socket,
        User("u1", "Ann"),
        queue_size=queue_size,
        policy=policy,
        metrics=metrics,
        max_unsent_bytes=max_unsent_bytes,
        budget=budget,
    )
    return conn, socket, metrics


def frame(text: str) -> bytes:
    return text_frame(text)


async def settle(until: Callable[[], bool] = lambda: False) -> None:
    """Let the flush task run (a few loop turns, no sleeping)."""
    for _ in range(20):
        if until():
            return
        await asyncio.sleep(0)


# ----------------------------------------------------------------------
# The hot path


async def test_a_socket_that_keeps_up_gets_the_same_bytes_at_once() -> None:
    conn, socket, _ = connection()
    message = frame("m1")
    conn.send(message, "a")
    conn.reply("r1")
    assert socket.written[0] is message  # no copy
    assert socket.written[1] == frame("r1")
    assert conn.unsent == 0
    assert conn.sending_since is None
    assert conn.replied == len(frame("r1"))


async def test_a_backed_up_socket_gets_the_queue_once_it_drains() -> None:
    budget = UnsentBytes(1 << 30)
    conn, socket, _ = connection(budget=budget)
    socket.pause()
    frames = [frame(f"m{i}") for i in range(3)]
    for f in frames:
        conn.send(f, "a")
    assert socket.written == []
    assert conn.unsent == budget.queued == sum(map(len, frames))
    await settle()
    assert conn.sending_since is not None  # the watchdog sees it stuck
    socket.resume()
    await settle(lambda: bool(socket.written))
    assert socket.data() == b"".join(frames)  # in one write
    assert conn.unsent == budget.queued == 0
    assert conn.sending_since is None
    await settle()
    conn.send(frames[0], "a")  # direct again
    assert socket.written == [frames[0]]


async def test_replies_go_before_queued_broadcast_frames() -> None:
    conn, socket, _ = connection()
    socket.pause()
    conn.send(frame("m1"), "a")
    conn.reply("r1")
    conn.send(frame("m2"), "a")
    conn.reply(frame("r2"))
    socket.resume()
    await settle(lambda: bool(socket.written))
    assert socket.data() == b"".join(
        [frame("r1"), frame("r2"), frame("m1"), frame("m2")]
    )


# ----------------------------------------------------------------------
# Slow-consumer policies


async def test_policy_close_closes_1013_when_the_queue_is_full() -> None:
    budget = UnsentBytes(1 << 30)
    conn, socket, metrics = connection(queue_size=2, budget=budget)
    socket.pause()
    conn.send(frame("m1"), "a")
    conn.send(frame("m2"), "a")
    assert not conn.closing
    conn.send(frame("m3"), "a")
    assert conn.close_code == 1013
    assert socket.closed_with == (1013, "slow consumer")
    assert metrics.slow_consumer_disconnects == 1
    assert conn.unsent == budget.queued == 0  # the queue is discarded
    socket.resume()
    await settle()
    assert socket.written == []
    conn.send(frame("m4"), "a")  # closed: nothing more
    assert socket.written == []
    assert metrics.slow_consumer_disconnects == 1


async def test_drop_oldest_drops_and_reports_lagged_before_the_next() -> None:
    conn, socket, metrics = connection(queue_size=2, policy="drop_oldest")
    socket.pause()
    for i in range(1, 5):
        conn.send(frame(f"a{i}"), "a")
    conn.send(frame("b1"), "b")  # drops a3: two rooms, one queue
    assert not conn.closing
    assert metrics.messages_dropped == 3
    socket.resume()
    await settle(lambda: bool(socket.written))
    assert socket.data() == b"".join(
        [frame(lagged("a", 3)), frame("a4"), frame("b1")]
    )
    assert metrics.lagged == 1
    await settle()
    conn.send(frame("a5"), "a")  # reported: direct again
    assert socket.data() == frame("a5")


async def test_a_lost_frame_of_an_emptied_room_is_reported_first() -> None:
    conn, socket, metrics = connection(policy="drop_oldest")
    conn.overflow("a")  # e.g. a frame held back during a replay
    assert metrics.messages_dropped == 1
    conn.send(frame("a1"), "a")  # not direct: lagged goes first
    await settle(lambda: bool(socket.written))
    assert socket.data() == frame(lagged("a", 1)) + frame("a1")


async def test_the_byte_bound_applies_before_the_frame_bound() -> None:
    big = frame("x" * 40)  # 42 bytes
    conn, socket, _ = connection(queue_size=100, max_unsent_bytes=100)
    socket.pause()
    conn.send(big, "a")
    conn.send(big, "a")
    assert not conn.closing
    conn.send(big, "a")  # 126 > 100
    assert socket.closed_with == (1013, "slow consumer")


async def test_the_socket_buffer_counts_against_the_byte_bound() -> None:
    conn, socket, metrics = connection(
        queue_size=100, max_unsent_bytes=100, policy="drop_oldest"
    )
    socket.pause()
    socket.buffer = 90
    assert conn.unsent == 90
    conn.send(frame("x" * 20), "a")  # 22 bytes: over, nothing to drop
    assert not conn.closing
    assert metrics.messages_dropped == 1
    assert conn.unsent == 90  # not queued
    socket.buffer = 0
    conn.send(frame("y"), "a")
    socket.resume()
    await settle(lambda: bool(socket.written))
    assert socket.data() == frame(lagged("a", 1)) + frame("y")


async def test_a_reply_over_the_byte_bound_closes_1013() -> None:
    conn, socket, metrics = connection(max_unsent_bytes=100)
    socket.pause()
    conn.reply("x" * 60)
    assert not conn.closing
    conn.reply("y" * 60)
    assert socket.closed_with == (1013, "too much unsent data")
    assert metrics.slow_consumer_disconnects == 1


async def test_the_worker_budget_follows_every_queued_byte() -> None:
    budget = UnsentBytes(1 << 30)
    one, sock1, _ = connection(budget=budget)
    two, sock2, _ = connection(budget=budget, policy="drop_oldest")
    sock1.pause()
    sock2.pause()
    one.send(frame("abc"), "a")
    two.reply("de")
    two.send(frame("f"), "a")
    assert budget.queued == one.unsent + two.unsent == 5 + 4 + 3
    one.close(1000, "")
    assert budget.queued == two.unsent == 7
    sock2.resume()
    await settle(lambda: bool(sock2.written))
    assert budget.queued == 0


async def test_forget_drops_one_rooms_frames_and_its_lag() -> None:
    budget = UnsentBytes(1 << 30)
    conn, socket, _ = connection(
        queue_size=2, policy="drop_oldest", budget=budget
    )
    socket.pause()
    conn.send(frame("a1"), "a")
    conn.send(frame("b1"), "b")
    conn.send(frame("a2"), "a")  # drops a1
    conn.forget("a")  # a re-sync follows: no lagged, no a2
    assert conn.unsent == budget.queued == len(frame("b1"))
    socket.resume()
    await settle(lambda: bool(socket.written))
    assert socket.data() == frame("b1")


async def test_presence_notices_are_dropped_from_half_full() -> None:
    conn, socket, metrics = connection(queue_size=4)
    socket.pause()
    conn.offer(frame("p1"), "a")
    conn.offer(frame("p2"), "a")
    conn.offer(frame("p3"), "a")  # two queued: half of 4
    assert metrics.messages_dropped == 1
    assert not conn.closing
    socket.resume()
    await settle(lambda: bool(socket.written))
    assert socket.data() == frame("p1") + frame("p2")


# ----------------------------------------------------------------------
# Waiting for a client that does not read; closing


async def test_wait_writable_waits_while_replies_are_backed_up() -> None:
    conn, socket, _ = connection(queue_size=2)
    stalls: list[bool] = []
    conn.on_stall = lambda: stalls.append(True)
    await asyncio.wait_for(conn.wait_writable(), 1)  # not backed up
    assert stalls == []
    socket.pause()
    conn.reply("r1")
    conn.reply("r2")
    assert conn.backed_up()
    waiting = asyncio.ensure_future(conn.wait_writable())
    await settle()
    assert not waiting.done()
    assert stalls == [True]
    socket.resume()
    await asyncio.wait_for(waiting, 1)
    assert stalls == [True]  # once


async def test_wait_writable_ends_when_the_connection_closes() -> None:
    conn, socket, _ = connection(queue_size=1)
    socket.pause()
    conn.reply("r1")
    waiting = asyncio.ensure_future(conn.wait_writable())
    await settle()
    conn.close(1008, "policy")
    await asyncio.wait_for(waiting, 1)


async def test_a_full_socket_buffer_alone_is_waited_for_and_timed() -> None:
    conn, socket, _ = connection(max_unsent_bytes=100)
    socket.pause()
    socket.buffer = 60  # nothing queued here: over half the bound
    waiting = asyncio.ensure_future(conn.wait_writable())
    await settle()
    assert not waiting.done()
    assert conn.sending_since is not None
    socket.buffer = 0
    socket.resume()
    await asyncio.wait_for(waiting, 1)
    assert conn.sending_since is None


async def test_close_with_flush_sends_the_queue_first() -> None:
    conn, socket, _ = connection()
    socket.pause()
    conn.send(frame("m1"), "a")
    conn.close(1012, "restart", flush=True)
    assert socket.closed_with is None
    conn.send(frame("m2"), "a")  # closing: not taken
    socket.resume()
    await settle(lambda: socket.closed_with is not None)
    assert socket.data() == frame("m1")
    assert socket.closed_with == (1012, "restart")


async def test_close_without_flush_discards_the_queue() -> None:
    conn, socket, _ = connection()
    socket.pause()
    conn.send(frame("m1"), "a")
    conn.close(1013, "slow")
    socket.resume()
    await settle()
    assert socket.written == []
    assert socket.closed_with == (1013, "slow")


async def test_a_lost_socket_ends_the_connection_1006() -> None:
    budget = UnsentBytes(1 << 30)
    conn, socket, _ = connection(budget=budget)
    socket.pause()
    conn.send(frame("m1"), "a")
    socket.abort()
    assert conn.closing
    assert conn.close_code == 1006
    assert budget.queued == 0
    conn.reply("late")
    assert socket.written == []


# ----------------------------------------------------------------------
# Keepalive


async def test_keepalive_pings_when_due_and_closes_1011_unanswered() -> None:
    conn, socket, _ = connection(FakeSocket(ping_interval=20.0))
    conn.keepalive(19.0)
    assert socket.pings == 0
    conn.keepalive(20.0)
    assert socket.pings == 1
    conn.keepalive(30.0)  # 10 s: not over the timeout yet
    assert not conn.closing
    conn.keepalive(30.5)
    assert conn.close_code == 1011
    assert socket.closed_with == (1011, "keepalive ping timeout")


async def test_keepalive_answered_pings_keep_the_connection() -> None:
    conn, socket, _ = connection(FakeSocket(ping_interval=20.0))
    conn.keepalive(20.0)
    socket.pong()
    conn.keepalive(35.0)
    conn.keepalive(40.0)
    assert socket.pings == 2
    assert not conn.closing


async def test_keepalive_off_or_closing_does_nothing() -> None:
    conn, socket, _ = connection(FakeSocket(ping_interval=None))
    conn.keepalive(1e9)
    assert socket.pings == 0
    closing, socket2, _ = connection(FakeSocket(ping_interval=20.0))
    socket2.pause()
    closing.send(frame("m"), "a")
    closing.close(1001, "", flush=True)  # still flushing: socket open
    closing.keepalive(100.0)
    assert socket2.pings == 0


# ----------------------------------------------------------------------
# Outbox, alone


def test_outbox_take_joins_replies_then_frames_with_their_lag() -> None:
    metrics = Metrics()
    budget = UnsentBytes(1 << 30)
    outbox = Outbox(
        _NothingBuffered(),
        queue_size=2,
        policy="drop_oldest",
        max_unsent_bytes=1 << 20,
        budget=budget,
        metrics=metrics,
    )
    assert not outbox
    assert outbox.add(b"A1", "a")
    assert outbox.add(b"A2", "a")
    assert outbox.add(b"A3", "a")  # drops A1
    assert outbox.add_reply(b"R")
    assert outbox.lagging
    assert outbox.queued == budget.queued == 5
    assert outbox.take() == b"R" + frame(lagged("a", 1)) + b"A2A3"
    assert not outbox
    assert not outbox.lagging
    assert outbox.queued == budget.queued == 0
    assert (metrics.messages_dropped, metrics.lagged) == (1, 1)


@pytest.mark.parametrize("policy", ["close", "drop_oldest"])
def test_outbox_refuses_what_does_not_fit(policy: SlowConsumerPolicy) -> None:
    outbox = Outbox(
        _NothingBuffered(),
        queue_size=10,
        policy=policy,
        max_unsent_bytes=4,
        budget=UnsentBytes(1 << 30),
        metrics=Metrics(),
    )
    assert not outbox.add(b"12345", "a")  # over the bytes, nothing to drop
    assert not outbox.add_reply(b"12345")
    assert outbox.queued == 0


def test_outbox_take_batches_about_64_kib() -> None:
    outbox = Outbox(
        _NothingBuffered(),
        queue_size=100,
        policy="close",
        max_unsent_bytes=1 << 30,
        budget=UnsentBytes(1 << 30),
        metrics=Metrics(),
    )
    chunk = b"x" * 40_000
    for _ in range(3):
        outbox.add(chunk, "a")
    assert len(outbox.take()) == 80_000  # stops once past 64 KiB
    assert len(outbox.take()) == 40_000
    assert not outbox


def test_connection_keys_are_unique_and_differ_in_a_forked_child() -> None:
    import os
    import warnings

    from sanic_chat.connection import _keys

    keys = {_keys.next() for _ in range(1000)}
    assert len(keys) == 1000
    assert all("|" not in key for key in keys)  # Redis' event separator
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, _keys.next().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    prefix = next(iter(keys)).split(".")[0]
    assert child and child.split(".")[0] != prefix
