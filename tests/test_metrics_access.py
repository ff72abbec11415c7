"""Who can read ``/metrics``, and what it tells about rooms.

Real servers and real scrapes; rooms named like secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from typing import Any

import httpx
import pytest

from sanic_chat import ConfigError

from .conftest import TIMEOUT, LiveServer, live, make_app

ROOMS = ["staff", "secret-merger-talks"]
KEY = "mk-0123456789abcdef"


def room_labels(text: str) -> set[str]:
    return set(
        re.findall(r'^sanic_chat_room_members\{room="([^"]*)"\}', text, re.M)
    )


async def scrape(
    srv: LiveServer, method: str = "GET", **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        return await http.request(
            method, f"http://127.0.0.1:{srv.port}/metrics", headers=headers
        )


@contextlib.asynccontextmanager
async def busy(**options: Any) -> Any:
    """A live server with one client in each secret room."""
    async with live(make_app(**options)) as srv:
        async with srv.client(room=ROOMS[0]), srv.client(room=ROOMS[1]):
            yield srv


async def test_by_default_anonymous_scrapers_see_no_room_name() -> None:
    async with busy() as srv:
        reply = await scrape(srv)
        assert reply.status_code == 200
        for room in ROOMS:
            assert room not in reply.text
        assert "sanic_chat_room_members" not in reply.text
        assert re.search(r"^sanic_chat_rooms 2\.0$", reply.text, re.M)
        assert re.search(r"^sanic_chat_connections 2\.0$", reply.text, re.M)


@pytest.mark.sanic_ext  # its automatic HEAD route
async def test_a_metrics_key_is_required_when_set() -> None:
    async with busy(metrics_key=KEY, metrics_room_labels="names") as srv:
        for headers in [
            {},
            {"Authorization": "Bearer wrong"},
            {"X-API-Key": KEY[:-1]},
            {"Authorization": f"Basic {KEY}"},
        ]:
            reply = await scrape(srv, **headers)
            assert reply.status_code == 401, headers
            assert "staff" not in reply.text
            assert reply.json()["error"]["code"] == "unauthorized"
        # sanic-ext's automatic HEAD route meets the same check.
        assert (await scrape(srv, "HEAD")).status_code == 401
        for headers in [
            {"Authorization": f"Bearer {KEY}"},
            {"X-API-Key": KEY},
        ]:
            reply = await scrape(srv, **headers)
            assert reply.status_code == 200, headers
            assert room_labels(reply.text) == set(ROOMS)
        snapshot = srv.chat.metrics_snapshot()
        assert snapshot["auth_failures"]["invalid_metrics_key"] == 5


async def test_hashed_room_labels_are_stable_keyed_hashes() -> None:
    async with busy(metrics_key=KEY, metrics_room_labels="hashed") as srv:
        auth = {"Authorization": f"Bearer {KEY}"}
        first = room_labels((await scrape(srv, **auth)).text)
        second = room_labels((await scrape(srv, **auth)).text)
        expected = {
            hmac.new(KEY.encode(), r.encode(), hashlib.sha256).hexdigest()[:16]
            for r in ROOMS
        }
        assert first == second == expected
    # Another key, other labels: without the key they cannot be matched.
    async with busy(api_key="other", metrics_room_labels="hashed") as srv:
        labels = room_labels((await scrape(srv)).text)
        assert len(labels) == 2 and not labels & expected


def test_room_label_modes_are_checked() -> None:
    with pytest.raises(ConfigError, match="metrics_room_labels"):
        make_app(metrics_room_labels="yes")
