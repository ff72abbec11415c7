"""Broadcaster backends and the URL that chooses one."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError
from .base import (
    Broadcaster,
    Event,
    Gap,
    HistoryPage,
    PresenceInfo,
    Subscription,
)
from .memory import MemoryBroadcaster

__all__ = [
    "Broadcaster",
    "Event",
    "Gap",
    "HistoryPage",
    "MemoryBroadcaster",
    "PresenceInfo",
    "Subscription",
    "broadcaster_from_url",
    "mask_url",
]


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+unix")
_REDIS_OPTIONS = {
    "prefix": str,
    "history_ttl": int,
    "presence_ttl": int,
    "heartbeat": float,
    "timeout": float,
}


def broadcaster_from_url(url: str, *, history_size: int = 100) -> Broadcaster:
    """Create a broadcaster from a URL.

    Args:
        url: ``memory://`` (optionally ``?max_channels=N``), or a Redis URL
            (``redis://``, ``rediss://``, ``unix://``, ``redis+unix://``)
            with optional ``prefix``, ``history_ttl``, ``presence_ttl``,
            ``heartbeat`` and ``timeout`` query parameters; the others go
            to redis-py (e.g. ``db``).
        history_size: Events kept per room.

    Raises:
        ConfigError: The scheme is unknown or a parameter is invalid.
    """
    parts = urlsplit(url)
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        if parts.scheme == "memory":
            return MemoryBroadcaster(
                history_size=history_size,
                max_channels=int(params.get("max_channels", 10_000)),
            )
        if parts.scheme in _REDIS_SCHEMES:
            from .redis import RedisBroadcaster

            options = {
                name: kind(params.pop(name))
                for name, kind in _REDIS_OPTIONS.items()
                if name in params
            }
            scheme = "unix" if parts.scheme == "redis+unix" else parts.scheme
            rest = urlencode(params)
            redis_url = urlunsplit(parts._replace(scheme=scheme, query=rest))
            return RedisBroadcaster(
                redis_url, history_size=history_size, **options
            )
    except ValueError:
        raise ConfigError(
            f"invalid parameter in broadcaster URL {mask_url(url)!r}"
        ) from None
    raise ConfigError(
        f"unknown broadcaster URL scheme {parts.scheme!r}; "
        "supported: memory://, redis://, rediss://, unix://"
    )


def mask_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
