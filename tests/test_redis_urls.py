"""Redis URL forms: ``redis+sentinel://`` and the durability options.

Pure parsing: nothing connects here (see tests/test_sentinel.py).
"""

from __future__ import annotations

import pytest

from sanic_chat import ConfigError, broadcaster_from_url
from sanic_chat.backends.redis import RedisBroadcaster
from sanic_chat.backends.redis_durability import Durability
from sanic_chat.backends.redis_sentinel import SentinelTarget


def _parts(url: str) -> tuple[SentinelTarget | None, Durability]:
    broadcaster = broadcaster_from_url(url)
    assert isinstance(broadcaster, RedisBroadcaster)
    link = broadcaster._link
    return link.target, link.durability


def test_a_sentinel_url_names_sentinels_service_db_and_passwords() -> None:
    target, durability = _parts(
        "redis+sentinel://app:pw@s1:26379,s2:26380,[::1]:26381/chat/3"
        "?sentinel_password=spw&prefix=x:&wait_replicas=1&wait_timeout=250"
    )
    assert target == SentinelTarget(
        (("s1", 26379), ("s2", 26380), ("::1", 26381)),
        "chat",
        3,
        username="app",
        password="pw",
        sentinel_password="spw",
    )
    assert "pw" not in repr(target)
    assert durability == Durability(replicas=1, timeout_ms=250)


def test_a_sentinel_url_defaults_db_port_and_durability() -> None:
    target, durability = _parts("redis+sentinel://s1/chat?password=p")
    assert target == SentinelTarget((("s1", 26379),), "chat", password="p")
    assert durability == Durability(replicas=0, timeout_ms=1000)
    assert not durability.on


def test_wait_replicas_applies_to_a_single_redis_too() -> None:
    target, durability = _parts("redis://h:6379/0?wait_replicas=2")
    assert target is None
    assert durability == Durability(replicas=2, timeout_ms=1000)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://s1:1/", "must name the service"),
        ("redis+sentinel://s1:1/chat/0/9", "must name the service"),
        ("redis+sentinel://s1:1/chat/x", "invalid parameter"),
        ("redis+sentinel://s1:nope/chat", "invalid parameter"),
        ("redis+sentinel://s1:1/chat?bogus=1", "unknown parameter(s) bogus"),
        ("redis+sentinel://s1:1/chat?wait_replicas=-1", "invalid parameter"),
        ("redis://h/0?wait_timeout=soon", "invalid parameter"),
    ],
)
def test_bad_sentinel_and_durability_urls_get_a_clear_error(
    url: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        broadcaster_from_url(url)
    assert says in str(info.value)
