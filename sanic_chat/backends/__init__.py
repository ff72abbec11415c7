"""Broadcaster backends and the URL that chooses one."""

from __future__ import annotations

from urllib.parse import (
    parse_qs,
    unquote_plus,
    urlencode,
    urlsplit,
    urlunsplit,
)

from ..errors import ConfigError
from .base import (
    Broadcaster,
    Broker,
    Event,
    Gap,
    HistoryPage,
    Idempotency,
    Presence,
    PresenceInfo,
    ReadState,
    Receipts,
    Subscribers,
    Subscription,
    idempotency_of,
    receipts_of,
)
from .combined import CombinedBroadcaster
from .memory import MemoryBroadcaster, MemoryPresence

__all__ = [
    "Broadcaster",
    "Broker",
    "CombinedBroadcaster",
    "Event",
    "Gap",
    "HistoryPage",
    "Idempotency",
    "MemoryBroadcaster",
    "MemoryPresence",
    "Presence",
    "PresenceInfo",
    "ReadState",
    "Receipts",
    "Subscribers",
    "Subscription",
    "broadcaster_from_url",
    "idempotency_of",
    "mask_url",
    "receipts_of",
]


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+unix")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
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
        url: ``memory://`` (optionally ``?max_channels=N`` and
            ``max_history_bytes=N``), or a Redis URL
            (``redis://``, ``rediss://``, ``unix://``, ``redis+unix://``)
            with optional ``prefix``, ``history_ttl``, ``presence_ttl``,
            ``heartbeat`` and ``timeout`` query parameters; the others go
            to redis-py (e.g. ``db``). A Redis Cluster is
            ``redis+cluster://host:port[,host:port...]/`` (or
            ``rediss+cluster://`` for TLS) with the same parameters.
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
                max_history_bytes=int(
                    params.get("max_history_bytes", 64 * 1024 * 1024)
                ),
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
        if parts.scheme in _CLUSTER_SCHEMES:
            return _redis_cluster_from_url(url, params, history_size)
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(
            f"invalid parameter in broadcaster URL {mask_url(url)!r}"
        ) from None
    raise ConfigError(
        f"unknown broadcaster URL scheme {parts.scheme!r}; "
        "supported: memory://, redis://, rediss://, unix://, "
        "redis+cluster://"
    )


def _redis_cluster_from_url(
    url: str, params: dict[str, str], history_size: int
) -> Broadcaster:
    """``redis+cluster://host:port[,host:port...]/?prefix=...``."""
    from .redis import RedisBroadcaster

    options = {
        name: kind(params.pop(name))
        for name, kind in _REDIS_OPTIONS.items()
        if name in params
    }
    rest = urlencode(params)
    cluster_url = url.partition("?")[0] + (f"?{rest}" if rest else "")
    return RedisBroadcaster(cluster_url, history_size=history_size, **options)


# Query parameters whose value is masked: a name containing any of these
# (case-insensitive, after percent-decoding) is a credential, e.g.
# ``password``, ``sentinel_password``, ``ssl_password``, ``token``,
# ``api_key``. Over-masking a file path (``ssl_keyfile``) costs nothing.
_SECRET_PARAMS = (
    "pass",
    "pwd",
    "token",
    "secret",
    "auth",
    "key",
    "credential",
)
MASK = "***"


def mask_url(url: str) -> str:
    """Return ``url`` with every credential in it replaced by ``***``.

    What is masked, for every scheme:

    * the password of the user part (``redis://:pw@h``,
      ``redis://user:pw@h``); the user name is kept, it helps to tell
      which ACL user failed;
    * a user part without a password (``redis://tok@h``): it is most
      often a password or token written in the wrong place, so it is
      masked whole;
    * the value of every query parameter whose name (case-insensitive,
      percent-decoded) contains ``pass``, ``pwd``, ``token``,
      ``secret``, ``auth``, ``key`` or ``credential`` (so ``password``,
      ``passwd``, ``sentinel_password``, ``api_key``, ...);
    * the fragment, which no backend reads.

    The URL is otherwise returned as written. A password must be
    percent-encoded if it holds ``?`` or ``#`` (as for redis-py, which
    would not read it either); a raw ``/`` or ``@`` in it is masked.
    Use this wherever a URL is logged, raised or shown.
    """
    rest, hash_, fragment = url.partition("#")
    rest, qmark, query = rest.partition("?")
    scheme, slashes, authority = rest.partition("://")
    if slashes and not authority.startswith("/"):
        # Everything up to the last "@" is the user part, even with a raw
        # "/" in it, which urlsplit would take for the start of the path.
        userinfo, at, host = authority.rpartition("@")
        if at:
            user, colon, _ = userinfo.partition(":")
            authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    masked = scheme + slashes + authority
    if qmark:
        masked += "?" + "&".join(_mask_param(p) for p in query.split("&"))
    if hash_:
        masked += "#" + (MASK if fragment else "")
    return masked


def _mask_param(param: str) -> str:
    name, eq, _ = param.partition("=")
    lowered = unquote_plus(name).lower()
    if eq and any(secret in lowered for secret in _SECRET_PARAMS):
        return f"{name}={MASK}"
    return param
