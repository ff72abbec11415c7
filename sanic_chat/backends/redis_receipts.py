"""Read receipts on Redis: one hash of marks per room.

``{prefix}read:{room}`` maps a user id to the stream id of the last
message that user read in the room. It expires with the room's history
(``history_ttl`` after the last mark), as the ids it holds would.

Each operation is one Lua script (one round trip, atomic): a mark is
accepted only for an id still in the room's stream, and only when it is
newer than the stored one, so two workers marking at once cannot move a
mark backwards. Stream ids are compared as two integers (``ms-seq``) by
their digits, since Lua's numbers cannot hold 64 bits; the id stored is
the one Redis returns, so ``0001-0`` from a client is stored as ``1-0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from ..errors import BroadcasterUnavailable
from .base import ReadState, Receipts
from .redis_link import RedisLink, valid_stream_id

# KEYS: stream, marks; ARGV: user id, message id, ttl.
# Returns -1 (not in history), 0 (not newer), 1 (moved).
_MARK = """
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2], 'COUNT', 1)
if #found == 0 then return -1 end
local id = found[1][1]
local function newer(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am > #bm end
  if am ~= bm then return am > bm end
  if #as ~= #bs then return #as > #bs end
  return as > bs
end
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current and not newer(id, current) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: stream, marks; ARGV: user id, limit. Returns {mark or false, n}.
_STATE = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then
  return {false, math.min(redis.call('XLEN', KEYS[1]), tonumber(ARGV[2]))}
end
local rows = redis.call('XRANGE', KEYS[1], '(' .. current, '+',
                        'COUNT', ARGV[2])
return {current, #rows}
"""


class RedisReceipts(Receipts):
    """The :class:`~.base.Receipts` part of the Redis broadcaster.

    Args:
        link: The broadcaster's Redis connection and key names.
        history_ttl: Seconds a room's marks survive without a new one.
    """

    def __init__(self, link: RedisLink, *, history_ttl: int) -> None:
        self._link = link
        self._ttl = history_ttl
        self._mark: Any = None
        self._state: Any = None

    async def load(self) -> None:
        """Register and load the scripts (at connect)."""
        redis = self._link.client()
        self._mark = redis.register_script(_MARK)
        self._state = redis.register_script(_STATE)
        await redis.script_load(_MARK)
        await redis.script_load(_STATE)

    def _keys(self, channel: str) -> list[str]:
        link = self._link
        return [link.key("history", channel), link.key("read", channel)]

    async def mark_read(
        self, channel: str, user_id: str, message_id: str
    ) -> bool | None:
        """Move the mark forward, atomically, if the id is in history."""
        if not valid_stream_id(message_id):
            return None
        try:
            moved = await self._mark(
                keys=self._keys(channel),
                args=[user_id, message_id, self._ttl],
            )
        except (RedisError, OSError) as exc:
            if "Invalid stream ID" in str(exc):
                return None
            raise BroadcasterUnavailable(f"mark failed: {exc}") from None
        return None if moved < 0 else bool(moved)

    async def receipts(
        self, channel: str, user_ids: Sequence[str]
    ) -> dict[str, str]:
        """Read the marks of ``user_ids`` (one ``HMGET``)."""
        if not user_ids:
            return {}
        redis = self._link.client()
        try:
            marks = await redis.hmget(
                self._link.key("read", channel), list(user_ids)
            )
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"receipts failed: {exc}") from None
        return {
            user: mark.decode() if isinstance(mark, bytes) else mark
            for user, mark in zip(user_ids, marks, strict=True)
            if mark is not None
        }

    async def read_state(
        self, channel: str, user_id: str, *, limit: int
    ) -> ReadState:
        """Read the mark and count the stream's entries after it."""
        try:
            mark, unread = await self._state(
                keys=self._keys(channel), args=[user_id, limit]
            )
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"read state failed: {exc}") from None
        return ReadState(None if mark is None else mark.decode(), int(unread))
