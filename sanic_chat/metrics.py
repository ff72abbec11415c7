"""Counters and gauges of one worker, and their Prometheus exposition.

The hot paths only add to plain integers (:class:`Metrics`); nothing on
the per-message path takes a lock or formats a label. :meth:`Metrics.
snapshot` is the Python API. With the ``prometheus-client`` package
(``pip install 'sanic-chat[metrics]'``) the blueprint serves them as
Prometheus text at ``CHAT_METRICS_PATH`` (``/metrics``), every name
prefixed ``sanic_chat_``.

Several workers: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
before starting (the blueprint sets a temporary one when Sanic starts
more than one worker and it is not set). Each worker then copies its
numbers into prometheus-client's multiprocess files every second and on
every scrape, and ``/metrics`` answers for all workers whichever one
takes the request: counters are summed, gauges of connections and rooms
summed over live workers, and the broadcaster's health is reported per
worker (``pid`` label).

Room names can be secrets (``/api/rooms`` hides the rooms a caller may
not join): per-room series are off unless ``CHAT_METRICS_ROOM_LABELS``
says ``hashed`` or ``names`` (:func:`room_labeller`), and
``CHAT_METRICS_KEY`` makes the route ask for a key (:func:`may_scrape`).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from typing import Any

# Latency buckets of a broadcaster publish, in seconds.
PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)  # fmt: skip
TOP_ROOMS = 10


def room_labeller(mode: str, key: str) -> Callable[[str], str] | None:
    """The ``room`` label of each room's series, or None for no series.

    ``hashed``: the first 16 hex digits of HMAC-SHA256(``key``, name),
    stable across scrapes, restarts and workers. With an empty ``key``
    anyone can hash a list of likely names and match them.
    """
    if mode == "off":
        return None
    if mode == "names":
        return str
    secret = key.encode()

    def hashed(room: str) -> str:
        digest = hmac.new(secret, room.encode(), hashlib.sha256)
        return digest.hexdigest()[:16]

    return hashed


def may_scrape(headers: Mapping[str, str], key: str) -> bool:
    """Whether a request with ``headers`` may read the metrics.

    Always, when ``key`` is empty; otherwise with ``Authorization:
    Bearer <key>`` or ``X-API-Key: <key>`` (compared in constant time).
    """
    if not key:
        return True
    bearer = headers.get("authorization", "")
    scheme, _, offered = bearer.partition(" ")
    candidates = [headers.get("x-api-key", "")]
    if scheme.lower() == "bearer":
        candidates.append(offered.strip())
    secret = key.encode()
    return any(
        hmac.compare_digest(c.encode(), secret) for c in candidates if c
    )


class Metrics:
    """What one worker's chat has done, as plain numbers."""

    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        self.messages_dropped = 0
        self.slow_consumer_disconnects = 0
        self.lagged = 0
        self.rate_limited = 0
        self.auth_failures: dict[str, int] = {}
        self.publish_count = 0
        self.publish_seconds = 0.0
        self.publish_buckets = [0] * (len(PUBLISH_BUCKETS) + 1)
        # The on_message hook (sanic_chat.archive).
        self.archived = 0
        self.archive_failures = 0
        self.archive_dropped = 0

    def observe_publish(self, seconds: float) -> None:
        """Record the latency of one broadcaster publish."""
        self.publish_count += 1
        self.publish_seconds += seconds
        self.publish_buckets[bisect.bisect_left(PUBLISH_BUCKETS, seconds)] += 1

    def auth_failure(self, reason: str) -> None:
        """Count an upgrade or API call refused for ``reason``."""
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    def snapshot(self, chat: Any) -> dict[str, Any]:
        """Every counter and gauge of this worker, as a dict."""
        sizes = chat.room_sizes()
        archive = chat.hub.archive
        top = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "connections": chat.connection_count,
            "rooms": len(sizes),
            "room_members": dict(top[:TOP_ROOMS]),
            "messages_received": self.messages_received,
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "slow_consumer_disconnects": self.slow_consumer_disconnects,
            "lagged": self.lagged,
            "rate_limited": self.rate_limited,
            "auth_failures": dict(self.auth_failures),
            "publish_count": self.publish_count,
            "publish_seconds": self.publish_seconds,
            "publish_buckets": list(self.publish_buckets),
            "broadcaster_healthy": chat.broadcaster.healthy,
            "broadcaster_reconnects": chat.broadcaster.reconnects,
            "unsent_bytes": chat.hub.unsent.total,
            "archived": self.archived,
            "archive_failures": self.archive_failures,
            "archive_dropped": self.archive_dropped,
            "archive_queued": 0 if archive is None else archive.pending,
        }


class PrometheusExporter:
    """Copies a chat's :class:`Metrics` into prometheus-client objects.

    Raises:
        ImportError: ``prometheus-client`` is not installed.
    """

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        room_label: Callable[[str], str] | None = None,
    ) -> None:
        import prometheus_client as prom

        self._prom = prom
        self._snapshot = snapshot
        self._room_label = room_label
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = prom.CollectorRegistry()
        r = self.registry
        live: dict[str, Any] = {"multiprocess_mode": "livesum"}
        self._gauges = {
            "connections": prom.Gauge(
                "sanic_chat_connections", "Open WebSocket connections",
                registry=r, **live),
            "rooms": prom.Gauge(
                "sanic_chat_rooms", "Rooms with members (per worker, summed)",
                registry=r, **live),
            "unsent_bytes": prom.Gauge(
                "sanic_chat_unsent_bytes",
                "Bytes produced for clients and not yet read by them",
                registry=r, **live),
            "archive_queued": prom.Gauge(
                "sanic_chat_archive_queued",
                "Events waiting for the on_message hook",
                registry=r, **live),
            "broadcaster_healthy": prom.Gauge(
                "sanic_chat_broadcaster_up",
                "1 if the worker can reach its broadcaster",
                registry=r, multiprocess_mode="liveall"),
        }  # fmt: skip
        self._members = prom.Gauge(
            "sanic_chat_room_members",
            f"Members of the {TOP_ROOMS} largest rooms of each worker",
            ["room"], registry=r if room_label else None, **live,
        )  # fmt: skip
        self._counters = {
            name: prom.Counter(f"sanic_chat_{name}", text, registry=r)
            for name, text in [
                ("messages_received", "Chat messages published"),
                ("messages_sent", "Frames handed to sockets"),
                ("messages_dropped", "Frames dropped for slow clients"),
                ("slow_consumer_disconnects", "Slow clients closed (1013)"),
                ("lagged", "lagged notices sent"),
                ("rate_limited", "Frames or calls refused by rate limits"),
                ("broadcaster_reconnects", "Broadcaster reconnections"),
                ("archived", "Events the on_message hook took"),
                ("archive_failures", "Events the on_message hook failed on"),
                ("archive_dropped", "Events dropped: on_message queue full"),
            ]
        }
        self._auth = prom.Counter(
            "sanic_chat_auth_failures", "Refused upgrades and API calls",
            ["reason"], registry=r,
        )  # fmt: skip
        self._publish = prom.Histogram(
            "sanic_chat_publish_seconds", "Broadcaster publish latency",
            buckets=PUBLISH_BUCKETS, registry=r,
        )  # fmt: skip
        self._last: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    def sync(self) -> None:
        """Bring the prometheus-client objects up to date."""
        now = self._snapshot()
        last = self._last
        for name, gauge in self._gauges.items():
            gauge.set(float(now[name]))
        label = self._room_label
        if label is not None:
            members = now["room_members"]
            for room in self._last.get("room_members", {}):
                if room not in members:
                    # Multiprocess mode cannot remove a series: zero it.
                    self._members.labels(room=label(room)).set(0)
            for room, size in members.items():
                self._members.labels(room=label(room)).set(size)
        for name, counter in self._counters.items():
            delta = now[name] - last.get(name, 0)
            if delta > 0:
                counter.inc(delta)
        for reason, count in now["auth_failures"].items():
            delta = count - last.get("auth_failures", {}).get(reason, 0)
            if delta > 0:
                self._auth.labels(reason=reason).inc(delta)
        self._sync_histogram(now)
        self._last = now

    def _sync_histogram(self, now: dict[str, Any]) -> None:
        # Feed the new observations' bucket counts as representative
        # values: exact bucket counts, and a sum within bucket precision.
        buckets = now["publish_buckets"]
        before = self._last.get("publish_buckets", [0] * len(buckets))
        bounds = (*PUBLISH_BUCKETS, PUBLISH_BUCKETS[-1] * 2)
        for bound, n_now, n_before in zip(
            bounds, buckets, before, strict=True
        ):
            for _ in range(n_now - n_before):
                self._publish.observe(bound)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text for this worker, or all of them."""
        prom = self._prom
        self.sync()
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST

    def start(self) -> None:
        """With several workers, sync every second so scrapes see all."""
        if self.multiprocess and self._task is None:
            self._task = asyncio.create_task(self._every_second())

    async def stop(self) -> None:
        """Stop syncing; mark this worker's live gauges dead."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                os.getpid()
            )

    async def _every_second(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.sync()
