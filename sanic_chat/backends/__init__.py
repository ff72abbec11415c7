"""Broadcaster backends and the URL that chooses one."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

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
]


def broadcaster_from_url(url: str, *, history_size: int = 100) -> Broadcaster:
    """Create a broadcaster from a URL such as ``memory://``.

    Args:
        url: ``memory://`` (optionally ``?max_channels=N``).
        history_size: Events kept per room, unless the URL says otherwise.

    Raises:
        ConfigError: The scheme is unknown or a parameter is invalid.
    """
    parts = urlsplit(url)
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        try:
            return MemoryBroadcaster(
                history_size=history_size,
                max_channels=int(params.get("max_channels", 10_000)),
            )
        except ValueError:
            raise ConfigError(
                f"invalid parameter in broadcaster URL {url!r}"
            ) from None
    raise ConfigError(
        f"unknown broadcaster URL scheme {parts.scheme!r} in {url!r}; "
        "supported: memory://"
    )
