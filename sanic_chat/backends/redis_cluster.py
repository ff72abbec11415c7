"""What differs on Redis Cluster: the client, key names, multi-key reads.

``redis+cluster://host:port[,host:port...]/`` makes the Redis broadcaster
use a cluster. Everything of one room lives in one slot, the room's hash
tag: ``{prefix}room:{{room}}`` (the channel), ``{prefix}history:{{room}}``,
``{prefix}presence:{{room}}`` and ``{prefix}read:{{room}}``, so the
publish script, receipts and history stay one round trip on one shard.
A worker's heartbeat key and control channel carry the worker's own tag
(``{prefix}worker:{{worker}}``, ``{prefix}control:{{worker}}``); refs of
sent messages are single keys, named as on one Redis. Rooms publish with
``SPUBLISH``, so a message only travels to the shard that owns its room
(the listener, :mod:`.redis_shards`, subscribes with ``SSUBSCRIBE``).

Two operations touched several slots at once and are split here:
reading the liveness of a room's workers (``MGET`` becomes one ``MGET``
per slot, through redis-py's ``mget_nonatomic``), and removing a
presence field in a batch (a script cannot run inside redis-py's cluster
pipeline: the writer, the only writer of its own fields, deletes a field
whose local count reached zero and decrements the others).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import RedisError

from ..errors import BroadcasterUnavailable, ConfigError
from .redis_link import RedisLink
from .redis_presence import RedisPresence

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

# redis-py's cluster client fails a command when a node's pool is full
# (it does not queue as the single-Redis pool does), so the bound per
# node is high; the presence writer batches joins, so few are needed.
NODE_CONNECTIONS = 1024

# Key kinds named per room or per worker, with its hash tag.
_TAGGED = ("room", "history", "presence", "read", "worker", "control")


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``)."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def check_cluster_support() -> None:
    """Fail clearly when the installed redis-py lacks sharded pub/sub.

    Raises:
        ConfigError: redis-py is older than 5.0 (no ``SSUBSCRIBE``).
    """
    if not hasattr(PubSub, "ssubscribe"):
        raise ConfigError(
            "Redis Cluster needs redis-py 5.0 or later (sharded pub/sub); "
            "pip install -U 'redis>=5'"
        )


class ClusterLink(RedisLink):
    """The :class:`~.redis_link.RedisLink` of a Redis Cluster.

    Args:
        url: ``redis+cluster://[user:password@]host:port[,host:port...]/``
            with optional redis-py query parameters; ``rediss+cluster``
            for TLS.
        prefix: Namespace of every key and channel; no braces, which
            would change the hash tags.
        timeout: Seconds to wait for Redis when connecting.

    Raises:
        ConfigError: No host, a bad port, a prefix with ``{`` or ``}``,
            or a redis-py without sharded pub/sub.
    """

    PUBLISH = "SPUBLISH"

    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout)
        check_cluster_support()
        if "{" in prefix or "}" in prefix:
            raise ConfigError(
                "the prefix of a Redis Cluster broadcaster must not contain "
                f"'{{' or '}}' (it would change the hash tags): {prefix!r}"
            )
        self.startup, self.options = cluster_options(url)
        self.cluster: RedisCluster | None = None

    async def open(self) -> None:
        """Connect to the cluster and read its slot map.

        Raises:
            BroadcasterUnavailable: No startup node answers.
        """
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self.startup],
            max_connections=NODE_CONNECTIONS,
            socket_connect_timeout=self.timeout,
            socket_timeout=None,  # the heartbeat judges Redis
            retry=Retry(NoBackoff(), 1),
            decode_responses=False,
            **self.options,
        )
        try:
            await cluster.initialize()
        except (RedisError, OSError) as exc:
            with contextlib.suppress(RedisError, OSError):
                await cluster.aclose()
            raise BroadcasterUnavailable(
                f"cannot connect to Redis Cluster at {self.masked_url}: {exc}"
            ) from None
        self.cluster = cluster
        # The parts use the commands both clients share.
        self.redis = cast(aioredis.Redis, cluster)
        self.closed.clear()

    async def close(self) -> None:
        """Delete this worker's liveness key and close every node."""
        await super().close()
        self.cluster = None

    async def drop_connections(self) -> None:
        """Close every node's connections; commands waiting on them fail."""
        if self.cluster is not None:
            for node in self.cluster.get_nodes():
                with contextlib.suppress(RedisError, OSError):
                    await node.disconnect()

    def key(self, kind: str, name: str) -> str:
        """Return a key or channel name, with its room's or worker's tag.

        Refs keep their single-Redis name: they are single keys.
        """
        if kind in _TAGGED:
            return f"{self.prefix}{kind}:{{{name}}}"
        return super().key(kind, name)

    def name_of(self, kind: str, key: str) -> str:
        """Return the room or worker name in a key made by :meth:`key`."""
        return key[len(self.prefix) + len(kind) + 2 : -1]

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Read keys of several slots: one ``MGET`` per slot."""
        cluster = self.cluster
        if cluster is None:
            raise BroadcasterUnavailable("Redis broadcaster is not connected")
        return list(await cluster.mget_nonatomic(list(keys)))

    async def refresh_topology(self) -> None:
        """Read the slot map again (after a failover or a migration)."""
        if self.cluster is not None:
            await self.cluster.nodes_manager.initialize()

    def primary_of(self, key: str) -> ClusterNode:
        """The primary that serves ``key``'s slot, as last read.

        Raises:
            BroadcasterUnavailable: Not connected, or the slot is served by
                no known node (a topology change under way).
        """
        cluster = self.cluster
        if cluster is None:
            raise BroadcasterUnavailable("Redis broadcaster is not connected")
        try:
            node = cluster.get_node_from_key(key)
        except RedisError as exc:
            raise BroadcasterUnavailable(f"no shard: {exc}") from None
        if node is None:
            raise BroadcasterUnavailable(f"no shard for {key}")
        return node

    def node_client(self, node: ClusterNode) -> aioredis.Redis:
        """A client of one node, for a pub/sub connection to that shard."""
        kwargs: dict[str, Any] = {
            key: value
            for key, value in node.connection_kwargs.items()
            if key in _NODE_KWARGS
        }
        return aioredis.Redis(
            host=node.host,
            port=int(node.port),
            retry=Retry(NoBackoff(), 0),
            single_connection_client=False,
            **kwargs,
        )


# What a pub/sub connection to one node keeps of the cluster's settings.
_NODE_KWARGS = (
    "username",
    "password",
    "credential_provider",
    "client_name",
    "socket_connect_timeout",
    "socket_keepalive",
    "socket_keepalive_options",
    "ssl",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
)


def cluster_options(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Split a cluster URL into its startup nodes and redis-py options.

    Raises:
        ConfigError: No host, or a port that is not a number.
    """
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    startup = []
    for host in filter(None, hosts.split(",")):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ConfigError(
                f"Redis Cluster hosts are host:port, not {host!r}"
            )
        startup.append((name, int(port)))
    if not startup:
        raise ConfigError("a redis+cluster:// URL needs at least one host")
    # redis-py reads the options (and their types) of a one-node URL.
    one = f"redis://{userinfo + '@' if userinfo else ''}{hosts.split(',')[0]}"
    options: dict[str, Any] = parse_url(  # type: ignore[no-untyped-call]
        one + (f"/?{parts.query}" if parts.query else "")
    )
    for name in ("host", "port", "db", "connection_class"):
        options.pop(name, None)
    if parts.scheme == "rediss+cluster":
        options["ssl"] = True
    return startup, options


class ClusterPresence(RedisPresence):
    """Presence on Redis Cluster: removals without a script (see above)."""

    async def _queue_remove(self, pipe: Any, key: str, field: str) -> None:
        # Counted locally already: this worker is its fields' only writer.
        if self._local.get(key, {}).get(field):
            pipe.hincrby(key, field, -1)
        else:
            pipe.hdel(key, field)
