"""``wait_replicas``: acknowledge a write only once replicas hold it.

Redis replicates asynchronously: a write the primary answered may still
be missing on its replicas when the primary dies, and the replica that
takes over never had it. With ``wait_replicas=N`` every write whose
loss would break a promise made to a client (a published message, the
ref that makes its resend idempotent) travels in one pipeline with
``WAIT N wait_timeout`` on the same connection: ``WAIT`` blocks until
``N`` replicas acknowledged every earlier write of that connection, or
the timeout passes. Fewer than ``N``: :class:`~sanic_chat.errors.
NotReplicated`, which the sender sees as ``unavailable``.

This is the one place that knows how; every Redis URL form (single
Redis, Sentinel, Cluster) reaches it through :func:`durably`. On a
cluster the pipeline goes to the primary that owns the written key: one
connection of that shard, as ``WAIT`` needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import PipelineCommand, RedisCluster
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError

from ..errors import NotReplicated


@dataclass(frozen=True)
class Durability:
    """How many replicas must confirm a write, and for how long to wait.

    Args:
        replicas: ``wait_replicas``; 0 acknowledges on the primary alone.
        timeout_ms: ``wait_timeout``: milliseconds ``WAIT`` may block.
    """

    replicas: int = 0
    timeout_ms: int = 1000

    def __post_init__(self) -> None:
        if self.replicas < 0 or self.timeout_ms < 0:
            raise ValueError("wait_replicas and wait_timeout must be >= 0")

    @property
    def on(self) -> bool:
        """Whether writes wait for replicas."""
        return self.replicas > 0


async def durably(
    redis: aioredis.Redis,
    durability: Durability,
    *command: Any,
    script: str | None = None,
    id_reply: bool = False,
) -> Any:
    """Run ``command``, then ``WAIT``, in one round trip on one connection.

    Without replicas to wait for, ``command`` alone.

    Args:
        redis: The client.
        durability: How many replicas must confirm it.
        command: The command and its arguments (``EVALSHA sha ...`` for a
            script: give its source as ``script`` to load it on NOSCRIPT).
        script: The source of the script ``command`` runs, if any.
        id_reply: The reply is a message id: carry it in the error.

    Returns:
        The command's reply.

    Raises:
        NotReplicated: Fewer replicas confirmed it within the timeout.
        RedisError: The command failed.
    """
    for attempt in range(2):
        try:
            if not durability.on:
                return await redis.execute_command(*command)  # type: ignore[no-untyped-call]
            reply, confirmed = await _with_wait(redis, durability, command)
            break
        except NoScriptError:
            if script is None or attempt:
                raise
            await redis.script_load(script)  # e.g. after a failover
    if int(confirmed) < durability.replicas:
        raise NotReplicated(
            f"{confirmed} of {durability.replicas} replica(s) confirmed "
            f"the write within {durability.timeout_ms} ms",
            reply.decode() if id_reply else None,
        )
    return reply


async def _with_wait(
    redis: aioredis.Redis, durability: Durability, command: Sequence[Any]
) -> tuple[Any, Any]:
    if isinstance(redis, RedisCluster):
        return await _with_wait_on_shard(redis, durability, command)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.execute_command(*command)
        pipe.execute_command(
            "WAIT", durability.replicas, durability.timeout_ms
        )
        reply, confirmed = await pipe.execute()
    return reply, confirmed


async def _with_wait_on_shard(
    cluster: RedisCluster, durability: Durability, command: Sequence[Any]
) -> tuple[Any, Any]:
    """``command`` and ``WAIT`` on one connection of the key's primary.

    redis-py's cluster pipeline would send the keyless ``WAIT`` to any
    node; here both go to the node that owns the command's key (the first
    key of a script). A ``MOVED`` (the slot has a new owner) updates the
    client's slot map and fails this write: the sender gets
    ``unavailable`` and resends with its ``ref``.
    """
    name = str(command[0]).upper()
    key = command[3] if name in ("EVALSHA", "EVAL") else command[1]
    node = cluster.get_node_from_key(key)
    if node is None:
        raise RedisError(f"no node serves the slot of {key!r}")
    commands = [
        PipelineCommand(0, *command),
        PipelineCommand(1, "WAIT", durability.replicas, durability.timeout_ms),
    ]
    await node.execute_pipeline(commands)
    for done in commands:
        if isinstance(done.result, (MovedError, AskError)):
            moved = cluster.nodes_manager.move_slot(done.result)
            if inspect.isawaitable(moved):  # async in newer redis-py
                await moved
        if isinstance(done.result, Exception):
            raise done.result
    return commands[0].result, commands[1].result
