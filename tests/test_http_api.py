"""The HTTP API: what a backend, an admin or a load balancer sees.

Plain HTTP calls go through sanic-testing's ASGI client; where a socket
must see the result, the app runs as a real server and a real WebSocket
client listens.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sanic import Request, Sanic
from sanic.response import json as json_response

import sanic_chat
from sanic_chat import Chat, JWTAuthenticator

from .conftest import live, make_app, new_app
from .tcp_proxy import TcpProxy
from .test_auth import SECRET, token

KEY = "k-0123456789abcdef"
SYSTEM = {"X-API-Key": KEY}


def api_app(**options: Any) -> Sanic:
    options.setdefault("authenticator", JWTAuthenticator(SECRET))
    options.setdefault("api_key", KEY)
    return make_app(**options)


def bearer(**claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**claims)}"}


async def call(
    app: Sanic, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    client = app.asgi_client
    _, response = await getattr(client, method)(path, **kwargs)
    return response.status, response.json


async def test_a_backend_publishes_and_reads_history_with_paging() -> None:
    app = api_app()
    ids = []
    for i in range(5):
        status, body = await call(
            app, "post", "/api/rooms/ops/messages",
            json={"text": f"deploy {i}"}, headers=SYSTEM,
        )  # fmt: skip
        assert status == 201 and body["room"] == "ops"
        ids.append(body["id"])

    async def texts(query: str) -> list[str]:
        status, body = await call(
            app, "get", f"/api/rooms/ops/history?{query}", headers=SYSTEM
        )
        assert status == 200, body
        return [m["text"] for m in body["messages"]]

    assert await texts("limit=2") == ["deploy 3", "deploy 4"]
    assert await texts(f"before={ids[3]}&limit=2") == ["deploy 1", "deploy 2"]
    assert await texts(f"after={ids[1]}") == [
        "deploy 2",
        "deploy 3",
        "deploy 4",
    ]
    status, body = await call(
        app, "get", "/api/rooms/ops/history?limit=1", headers=SYSTEM
    )
    message = body["messages"][0]
    assert message["user"] == {"id": "system", "name": "System"}
    assert message["id"] == ids[-1] and message["type"] == "message"


async def test_errors_are_json_with_a_stable_shape() -> None:
    app = api_app(max_text_length=10, rate_limit=1, rate_burst=2)
    post = "/api/rooms/ops/messages"
    status, body = await call(
        app, "post", post, json={"txt": "x"}, headers=SYSTEM
    )
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    fields = {f["field"] for f in body["error"]["fields"]}
    assert fields == {"text", "txt"}
    status, body = await call(
        app, "get", "/api/rooms/ops/history?limit=lots", headers=SYSTEM
    )
    assert (status, body["error"]["fields"][0]["field"]) == (400, "limit")
    status, body = await call(
        app, "post", post, json={"text": "x" * 11}, headers=SYSTEM
    )
    assert (status, body["error"]["code"]) == (413, "too_large")
    status, body = await call(
        app, "get", "/api/rooms/nobody-here/presence", headers=SYSTEM
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call(
        app, "get", "/api/rooms/nobody-here/history", headers=SYSTEM
    )
    assert status == 404
    status, body = await call(
        app, "get", "/api/rooms/ops/history?before=1-1", headers=SYSTEM
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call(
        app, "get", "/api/rooms/bad%20room/presence", headers=SYSTEM
    )
    assert (status, body["error"]["code"]) == (400, "bad_request")
    codes = []
    for _ in range(4):
        status, body = await call(
            app, "post", post, json={"text": "hi"}, headers=SYSTEM
        )
        codes.append(status)
    assert codes[:2] == [201, 201] and 429 in codes
    assert body["error"]["code"] == "rate_limited"


async def test_only_the_system_may_publish_or_disconnect() -> None:
    app = api_app()
    post = "/api/rooms/lobby/messages"
    status, body = await call(app, "post", post, json={"text": "hi"})
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, _ = await call(
        app, "post", post, json={"text": "hi"}, headers={"X-API-Key": "no"}
    )
    assert status == 401
    # A normal user may read but not post as the system.
    status, body = await call(
        app, "post", post, json={"text": "hi"}, headers=bearer()
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, _ = await call(
        app, "delete", "/api/users/u1/connections", headers=bearer()
    )
    assert status == 403
    status, _ = await call(app, "get", "/api/rooms", headers=bearer())
    assert status == 200
    # An admin token (claim chat_admin) may, and may name the sender.
    status, body = await call(
        app, "post", post, headers=bearer(chat_admin=True),
        json={"text": "hi", "user": {"id": "ci", "name": "CI bot"}},
    )  # fmt: skip
    assert status == 201


async def test_reading_a_room_follows_can_join() -> None:
    app = api_app(can_join=lambda user, room: room != "staff")
    status, body = await call(
        app, "get", "/api/rooms/staff/history", headers=bearer()
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, _ = await call(
        app, "get", "/api/rooms/staff/history", headers=SYSTEM
    )
    assert status == 404  # allowed, but nothing there yet


async def test_an_http_message_reaches_sockets_like_any_other() -> None:
    async with live(api_app()) as srv:
        async with (
            srv.client(token=token("u1", "Alice")) as alice,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
        ):
            reply = await http.post(
                "/api/rooms/lobby/messages", headers=SYSTEM,
                json={"text": "deploy done", "user": {"id": "ci", "name": "CI"}},
            )  # fmt: skip
            assert reply.status_code == 201
            message = await alice.expect("message", text="deploy done")
            assert message["id"] == reply.json()["id"]
            assert message["user"] == {"id": "ci", "name": "CI"}
            rooms = (await http.get("/api/rooms", headers=SYSTEM)).json()
            assert rooms == {
                "rooms": [{"room": "lobby", "members": 1, "users": 1}]
            }
            presence = await http.get(
                "/api/rooms/lobby/presence", headers=bearer()
            )
            assert presence.json()["users"] == [{"id": "u1", "name": "Alice"}]


async def test_disconnecting_a_user_closes_their_sockets_with_1008() -> None:
    async with live(api_app()) as srv:
        async with (
            srv.client(token=token("u1", "Alice")) as alice,
            srv.client(token=token("u2", "Bob")) as bob,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
        ):
            reply = await http.delete(
                "/api/users/u1/connections", headers=SYSTEM
            )
            assert reply.json() == {"user": "u1", "closed_here": 1}
            assert await alice.close_code() == 1008
            await bob.say("still here")


async def test_health_reports_readiness_and_503_without_the_broadcaster(
    redis_server: Any,
) -> None:
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    try:
        app = api_app(broadcaster=f"{proxy.url}?prefix=h:&heartbeat=0.3")
        async with (
            live(app) as srv,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
        ):
            health = await http.get("/api/health")
            assert health.status_code == 200 and health.json()["ready"]
            proxy.cut()
            async with asyncio.timeout(10):
                while (await http.get("/api/health")).status_code != 503:
                    await asyncio.sleep(0.1)
            reply = await http.post(
                "/api/rooms/lobby/messages",
                json={"text": "hi"},
                headers=SYSTEM,
            )
            assert reply.status_code == 503
            assert reply.json()["error"]["code"] == "unavailable"
            proxy.restore()
            async with asyncio.timeout(10):
                while (await http.get("/api/health")).status_code != 200:
                    await asyncio.sleep(0.1)
    finally:
        await proxy.stop()


@pytest.mark.sanic_ext
async def test_the_api_is_documented_with_openapi() -> None:
    app = api_app()
    _, response = await app.asgi_client.get("/docs/openapi.json")
    spec = response.json
    paths = spec["paths"]
    assert {
        "/api/rooms", "/api/rooms/{room}/history", "/api/rooms/{room}/presence",
        "/api/rooms/{room}/messages", "/api/users/{user_id}/connections",
        "/api/health",
    } <= set(paths)  # fmt: skip
    publish = paths["/api/rooms/{room}/messages"]["post"]
    assert "201" in publish["responses"] and "413" in publish["responses"]
    assert "text" in str(publish["requestBody"])


@pytest.mark.sanic_ext
async def test_the_app_can_inject_the_chat_into_its_handlers() -> None:
    app = api_app()

    @app.get("/whoami")
    async def whoami(request: Request, chat: Chat) -> Any:
        return json_response({"same": chat is sanic_chat.get_chat(app)})

    _, response = await app.asgi_client.get("/whoami")
    assert response.json == {"same": True}


async def test_the_api_can_be_turned_off() -> None:
    app = api_app(http_api=False)
    _, response = await app.asgi_client.get("/api/rooms", headers=SYSTEM)
    assert response.status == 404


def test_the_api_path_must_not_be_the_socket_path() -> None:
    with pytest.raises(sanic_chat.ConfigError):
        new_app().blueprint(sanic_chat.create_blueprint(api_path="/ws"))
