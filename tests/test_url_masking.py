"""Credentials in a broadcaster URL never reach a log line or an error.

A Redis password can sit in the user part (``redis://:pw@host``) or in
the query (``redis://host?password=pw``); :func:`mask_url` hides both,
and every place that logs, raises or shows a URL goes through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from sanic_chat import BroadcasterUnavailable, ConfigError
from sanic_chat.backends import broadcaster_from_url, mask_url
from sanic_chat.backends.redis import RedisBroadcaster

from .conftest import live, make_app
from .redis_server import RedisServer, free_port

PW = "s3cr3t-Pa55"

MASKED = {
    # userinfo
    "redis://:s3cr3t-Pa55@h:6379/0": "redis://:***@h:6379/0",
    "redis://app:s3cr3t-Pa55@h/0": "redis://app:***@h/0",
    "rediss://app:s3cr3t%2FPa55@h/0": "rediss://app:***@h/0",
    "redis://:s3cr3t/Pa55@h/0": "redis://:***@h/0",  # raw "/" in it
    # a lone user part is most often a password in the wrong place
    "redis://s3cr3t-Pa55@h/0": "redis://***@h/0",
    "unix://:s3cr3t-Pa55@/run/redis.sock": "unix://:***@/run/redis.sock",
    # query parameters, any case, percent-encoded names
    "redis://h/0?password=s3cr3t-Pa55&db=1": "redis://h/0?password=***&db=1",
    "redis://h?PassWord=s3cr3t-Pa55": "redis://h?PassWord=***",
    "redis://h?pass%77ord=s3cr3t-Pa55": "redis://h?pass%77ord=***",
    "redis://h?%70assword=s3cr3t-Pa55": "redis://h?%70assword=***",
    "redis://h?passwd=s3cr3t-Pa55": "redis://h?passwd=***",
    "redis://h?pass=s3cr3t-Pa55": "redis://h?pass=***",
    "redis://h?token=s3cr3t-Pa55": "redis://h?token=***",
    "redis://h?secret=s3cr3t-Pa55": "redis://h?secret=***",
    "redis://h?auth=s3cr3t-Pa55": "redis://h?auth=***",
    "redis://h?key=s3cr3t-Pa55": "redis://h?key=***",
    "redis://h?api_key=s3cr3t-Pa55": "redis://h?api_key=***",
    "redis://h?sentinel_password=s3cr3t-Pa55&username=app": (
        "redis://h?sentinel_password=***&username=app"
    ),
    "unix:///run/redis.sock?password=s3cr3t-Pa55&db=0": (
        "unix:///run/redis.sock?password=***&db=0"
    ),
    "redis+unix:///run/redis.sock?password=s3cr3t-Pa55": (
        "redis+unix:///run/redis.sock?password=***"
    ),
    "redis://h/0?password=a&password=s3cr3t-Pa55": (
        "redis://h/0?password=***&password=***"
    ),
    "redis://h/0#s3cr3t-Pa55": "redis://h/0#***",
    "redis://:s3cr3t-Pa55@h?password=s3cr3t-Pa55": (
        "redis://:***@h?password=***"
    ),
    # Sentinel: the primary's password and the sentinels' one
    "redis+sentinel://:s3cr3t-Pa55@a:1,b:2/chat/0?sentinel_password=x": (
        "redis+sentinel://:***@a:1,b:2/chat/0?sentinel_password=***"
    ),
    "redis+sentinel://a:1/chat?password=s3cr3t-Pa55&prefix=p:": (
        "redis+sentinel://a:1/chat?password=***&prefix=p:"
    ),
}
UNCHANGED = [
    "redis://127.0.0.1:6379/0",
    "redis://h/0?prefix=chat:&heartbeat=1&timeout=2",
    "unix:///run/redis.sock?db=2",
    "memory://?max_channels=10",
    "memory://",
]


@pytest.mark.parametrize("url", MASKED)
def test_every_credential_form_is_masked(url: str) -> None:
    assert mask_url(url) == MASKED[url]
    assert "s3cr3t" not in mask_url(url)


@pytest.mark.parametrize("url", UNCHANGED)
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert mask_url(url) == url


def test_a_config_error_and_the_repr_name_the_masked_url() -> None:
    with pytest.raises(ConfigError) as info:
        broadcaster_from_url(f"redis://h/0?password={PW}&heartbeat=often")
    assert "password=***" in str(info.value)
    assert PW not in str(info.value)
    broadcaster = broadcaster_from_url(f"redis://h/0?password={PW}")
    assert isinstance(broadcaster, RedisBroadcaster)
    assert PW not in repr(broadcaster)
    assert "password=***" in repr(broadcaster)


@pytest.mark.slow  # about 3 s: redis-py retries the absent sentinels
async def test_sentinel_passwords_never_reach_a_repr_or_an_error() -> None:
    url = (
        f"redis+sentinel://app:{PW}@127.0.0.1:{free_port()}/chat/0"
        f"?sentinel_password={PW}&timeout=0.2"
    )
    broadcaster = broadcaster_from_url(url)
    assert PW not in repr(broadcaster)
    assert "app:***@" in repr(broadcaster)
    with pytest.raises(BroadcasterUnavailable) as info:
        await broadcaster.connect()  # no sentinel listens there
    assert PW not in str(info.value)
    assert "sentinel_password=***" in str(info.value)


async def test_startup_failure_names_the_url_without_the_query_password() -> (
    None
):
    port = free_port()  # nothing listens there
    app = make_app(broadcaster=f"redis://127.0.0.1:{port}/0?password={PW}")
    with pytest.raises(BroadcasterUnavailable) as info:
        async with live(app):
            pass
    assert f"redis://127.0.0.1:{port}/0?password=***" in str(info.value)
    assert PW not in str(info.value)


def _rendered(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(message)s")
    return [formatter.format(record) for record in records]


async def _eventually(check: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.05)


async def test_outage_and_reconnect_warnings_never_print_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    redis = RedisServer(tmp_path / "redis", password=PW)
    redis.start()
    try:
        url = f"redis://127.0.0.1:{redis.port}/0?password={PW}"
        app = make_app(broadcaster=f"{url}&prefix=pw:&heartbeat=0.3")
        async with live(app) as srv, srv.client() as alice:
            await alice.say("through an authenticated Redis")
            redis.kill()
            await _eventually(lambda: not srv.chat.broadcaster.healthy)
            redis.start()
            # Healthy again: the subscription re-authenticated with the
            # password from the query.
            await _eventually(lambda: srv.chat.broadcaster.healthy)
            await alice.find("resync", room="lobby")
    finally:
        redis.kill()
    lines = _rendered(caplog.records)
    leaks = [line for line in lines if PW in line]
    assert leaks == []
    masked = f"redis://127.0.0.1:{redis.port}/0?password=***"
    warnings = [line for line in lines if masked in line]
    assert any("connection lost" in line for line in warnings), lines
    assert any("reconnected" in line for line in warnings), lines
