"""Unsent bytes: what a worker holds in memory for clients that lag.

Every byte the server has produced but a client has not yet read lives
in this process: in a connection's queues, in its socket's write buffer,
or in an HTTP response still being written. One client is bounded by
``max_unsent_bytes`` (see :class:`~sanic_chat.connection.Connection`);
this account bounds their sum per worker, so that many clients that
never read cannot exhaust memory together. While it is over its limit
the worker accepts no new work that produces such bytes: upgrades and
HTTP history reads are answered 503 before they start, and the clients
already connected keep being served.
"""

from __future__ import annotations


class UnsentBytes:
    """The worker's account of bytes produced but not yet read.

    Args:
        limit: Bytes above which :attr:`full` is true.

    Attributes:
        queued: Bytes in the connections' own queues (kept exactly: each
            connection adds and subtracts as it queues and writes).
        buffered: Bytes in the sockets' write buffers, as measured by the
            hub's last sweep (about once a second).
        in_flight: Bytes of HTTP responses that are still being written.
    """

    __slots__ = ("buffered", "in_flight", "limit", "queued")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self.buffered = 0
        self.in_flight = 0

    @property
    def total(self) -> int:
        """Every unsent byte of the worker, as far as it is known."""
        return self.queued + self.buffered + self.in_flight

    @property
    def full(self) -> bool:
        """Whether new work must wait: the total is at the limit."""
        return self.total >= self.limit
