"""Refs already sent, on Redis: one key per user and ref, shared by workers.

``{prefix}ref:{len(user_id)}:{user_id}:{ref}`` (the length keeps user
``a:b`` with ref ``c`` apart from user ``a`` with ref ``b:c``) holds the
empty string while a publish is under way and the message's id once it
is done, with Redis's own expiry: the lease, then the idempotency
window. A claim is one Lua script (read, and create when absent), so two
workers sending the same ref at once cannot both win.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from ..errors import BroadcasterUnavailable
from .base import Idempotency
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
        return value.decode() if isinstance(value, bytes) else str(value)

    async def settle(
        self, user_id: str, ref: str, message_id: str, ttl: float
    ) -> None:
        """Store the id with the window as the key's expiry."""
        redis = self._link.client()
        try:
            await redis.set(self._key(user_id, ref), message_id, px=_ms(ttl))
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
