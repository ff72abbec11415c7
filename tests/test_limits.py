"""Limits against hostile clients: none of them lets one degrade others."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sanic_chat import TokenAuthenticator, User

from .conftest import live, make_app

pytestmark = pytest.mark.usefixtures("backend")


async def test_flooding_gets_rate_limited_then_closed_and_others_are_fine() -> (
    None
):
    app = make_app(rate_limit=5, rate_burst=5, rate_limit_strikes=10)
    async with live(app) as srv, srv.client() as flood, srv.client() as calm:
        for i in range(40):
            await flood.send({"type": "ping", "n": i})
        frames = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(await flood.recv())
        kinds = [f["type"] for f in frames]
        assert kinds.count("pong") == 5  # the burst was served
        assert "rate_limited" in {f.get("code") for f in frames}
        assert flood.ws.close_code == 1008
        await calm.say("unaffected")


async def test_join_leave_churn_costs_more() -> None:
    app = make_app(rate_limit=1, rate_burst=10, churn_cost=5)
    async with live(app) as srv, srv.client() as churner:
        await churner.send({"type": "join", "room": "a"})
        await churner.find("joined", room="a")
        await churner.send({"type": "leave", "room": "a"})
        await churner.find("left", room="a")
        await churner.send({"type": "join", "room": "a"})
        await churner.find("error", code="rate_limited")


async def test_connections_per_user_are_limited_before_the_upgrade() -> None:
    alice = User("a", "Alice")
    auth = TokenAuthenticator({"t": alice})
    app = make_app(authenticator=auth, max_connections_per_user=2)
    async with live(app) as srv:
        async with srv.client(token="t"), srv.client(token="t"):
            with pytest.raises(InvalidStatus) as info:
                async with srv.client(token="t"):
                    pass
            assert info.value.response.status_code == 429
        async with srv.client(token="t"):  # freed again
            pass


async def test_concurrent_upgrades_cannot_bypass_the_per_user_limit() -> None:
    auth = TokenAuthenticator({"t": User("a", "Alice")})
    app = make_app(authenticator=auth, max_connections_per_user=2)
    async with live(app) as srv:
        attempts = await asyncio.gather(
            *(connect(srv.url(token="t")) for _ in range(20)),
            return_exceptions=True,
        )
        opened = [ws for ws in attempts if not isinstance(ws, BaseException)]
        refused = [e for e in attempts if isinstance(e, InvalidStatus)]
        assert len(opened) == 2 and len(refused) == 18
        assert {e.response.status_code for e in refused} == {429}
        await asyncio.gather(*(ws.close() for ws in opened))


async def test_an_occasionally_limited_client_is_not_disconnected() -> None:
    app = make_app(rate_limit=10, rate_burst=2, rate_limit_strikes=3)
    async with live(app) as srv, srv.client() as eager:
        limited = 0
        for _ in range(30):  # ~15/s against a limit of 10/s
            await eager.send({"type": "ping"})
            frame = await eager.recv()
            limited += frame.get("code") == "rate_limited"
            await asyncio.sleep(1 / 15)
        assert limited >= 3  # more refusals than strikes, never in a row
        assert eager.ws.close_code is None
