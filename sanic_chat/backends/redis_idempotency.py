"""Refs already sent, on Redis: one key per user and ref, shared by workers.

``{prefix}ref:{len(user_id)}:{user_id}:{ref}`` (the length keeps user
``a:b`` with ref ``c`` apart from user ``a`` with ref ``b:c``) holds the
empty string while a publish is under way and the message's id once it
is done, with Redis's own expiry: the lease, then the idempotency
window. A claim is one Lua script (read, and create when absent), so two
workers sending the same ref at once cannot both win.

With ``wait_replicas`` (:mod:`.redis_durability`) the stored id is
written with ``WAIT``, and a resend is answered with it only once
replicas confirm it: the ref is rewritten (unchanged) with ``WAIT``,
which covers every earlier write, so the message too, as replication
keeps the primary's order. Until then the resend gets ``unavailable``.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from ..errors import BroadcasterUnavailable
from .base import PENDING, Idempotency
from .redis_durability import durably
from .redis_link import RedisLink

# KEYS: the ref's key; ARGV: lease in ms. Returns the value, or false
# when this call created the claim.
_CLAIM = """
local value = redis.call('GET', KEYS[1])
if value then return value end
redis.call('SET', KEYS[1], '', 'PX', ARGV[1])
return false
"""

# KEYS: the ref's key. Deletes it only while it is a claim (empty).
_RELEASE = """
if redis.call('GET', KEYS[1]) == '' then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisIdempotency(Idempotency):
    """The :class:`~.base.Idempotency` part of the Redis broadcaster.

    Args:
        link: The broadcaster's Redis connection and key names.
    """

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._claim: Any = None
        self._release: Any = None

    async def load(self) -> None:
        """Register and load the scripts (at connect)."""
        redis = self._link.client()
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        await redis.script_load(_CLAIM)
        await redis.script_load(_RELEASE)

    def _key(self, user_id: str, ref: str) -> str:
        return self._link.key("ref", f"{len(user_id)}:{user_id}:{ref}")

    async def claim(self, user_id: str, ref: str, lease: float) -> str | None:
        """Claim ``ref`` (one script: read, and create when absent)."""
        try:
            value = await self._claim(
                keys=[self._key(user_id, ref)], args=[_ms(lease)]
            )
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"claim failed: {exc}") from None
        if value is None:
            return None
        known = value.decode() if isinstance(value, bytes) else str(value)
        if known != PENDING and self._link.durability.on:
            await self._replicated(user_id, ref, known)
        return known

    async def _replicated(self, user_id: str, ref: str, known: str) -> None:
        """Return once replicas hold ``known`` (and so its message)."""
        key = self._key(user_id, ref)
        try:
            # XX: an expired window is not brought back.
            await durably(
                self._link.client(),
                self._link.durability,
                "SET",
                key,
                known,
                "XX",
                "KEEPTTL",
            )
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"claim failed: {exc}") from None

    async def settle(
        self, user_id: str, ref: str, message_id: str, ttl: float
    ) -> None:
        """Store the id with the window as the key's expiry.

        Raises:
            NotReplicated: With ``wait_replicas``, too few replicas
                confirmed it (the ref is stored on the primary).
        """
        key = self._key(user_id, ref)
        try:
            await durably(
                self._link.client(),
                self._link.durability,
                "SET",
                key,
                message_id,
                "PX",
                _ms(ttl),
            )
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"settle failed: {exc}") from None

    async def release(self, user_id: str, ref: str) -> None:
        """Delete the claim, unless it was settled meanwhile."""
        try:
            await self._release(keys=[self._key(user_id, ref)], args=[])
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"release failed: {exc}") from None


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
