"""The HTTP API's side of message metadata, edit and delete, and the
before_publish hook: what a moderation backend sees.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sanic_chat import Forbidden, User

from .conftest import live
from .test_auth import token
from .test_http_api import SYSTEM, api_app, bearer, call

PATH = "/api/rooms/ops/messages"


async def test_publish_carries_meta_and_refuses_bad_meta() -> None:
    app = api_app()
    status, body = await call(
        app, "post", PATH, json={"text": "t", "meta": {"reply_to": "1-0"}},
        headers=SYSTEM,
    )  # fmt: skip
    assert status == 201
    status, page = await call(app, "get", "/api/rooms/ops/history",
                              headers=SYSTEM)  # fmt: skip
    assert page["messages"][0]["meta"] == {"reply_to": "1-0"}
    for meta, expected in (
        ([1], 400), ("x", 400), ({"x": "y" * 3000}, 413)
    ):  # fmt: skip
        status, body = await call(
            app, "post", PATH, json={"text": "t", "meta": meta},
            headers=SYSTEM,
        )  # fmt: skip
        assert status == expected, body
        if status == 400:
            assert body["error"]["fields"][0]["field"].startswith("meta")


async def test_a_moderator_edits_and_deletes_over_http() -> None:
    app = api_app()
    async with (
        live(app) as srv,
        srv.client(
            path="/ws", token=token(sub="alice", name="alice"), room="ops"
        ) as alice,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
    ):
        message = await alice.say("rude words", room="ops")
        answer = await http.patch(
            f"{PATH}/{message['id']}",
            json={"text": "[removed]", "user": {"id": "mod", "name": "Mod"}},
            headers=SYSTEM,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"id": message["id"], "room": "ops"}
        edited = await alice.find("edited")
        assert edited["text"] == "[removed]"
        assert edited["user"] == {"id": "mod", "name": "Mod"}
        answer = await http.delete(f"{PATH}/{message['id']}", headers=SYSTEM)
        assert answer.status_code == 200
        assert (await alice.find("deleted"))["id"] == message["id"]
        answer = await http.get("/api/rooms/ops/history", headers=SYSTEM)
        (tombstone,) = answer.json()["messages"]
        assert tombstone["deleted"] is True and "text" not in tombstone
        again = await http.delete(f"{PATH}/{message['id']}", headers=SYSTEM)
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "kwargs", "status"),
    [
        ("patch", {"json": {"text": "x"}}, 404),
        ("delete", {}, 404),
        ("patch", {"json": {"text": ""}}, 400),
        ("patch", {"json": {"text": "x", "meta": {}}}, 400),
        ("patch", {"json": {"text": "x" * 4001}}, 413),
        ("patch", {"content": b"x", "headers": {"content-type": "text/plain"}},
         415),
    ],
)  # fmt: skip
async def test_hostile_edit_and_delete_calls(
    method: str, kwargs: dict[str, Any], status: int
) -> None:
    app = api_app()
    headers = {**SYSTEM, **kwargs.pop("headers", {})}
    got, body = await call(
        app, method, f"{PATH}/no-such-id", headers=headers, **kwargs
    )
    assert got == status, body


async def test_edit_and_delete_need_the_system_permission() -> None:
    app = api_app()
    status, body = await call(app, "post", PATH, json={"text": "t"},
                              headers=SYSTEM)  # fmt: skip
    path = f"{PATH}/{body['id']}"
    for method, kwargs in (("patch", {"json": {"text": "y"}}), ("delete", {})):
        status, _ = await call(app, method, path, **kwargs)
        assert status == 401
        status, _ = await call(
            app, method, path, headers=bearer(sub="u"), **kwargs
        )
        assert status == 403
        status, _ = await call(
            app, method, path, headers={"X-API-Key": "wrong"}, **kwargs
        )
        assert status == 401


async def test_before_publish_applies_to_the_http_api() -> None:
    def before_publish(
        user: User, room: str, text: str, meta: object
    ) -> str | None:
        if "spam" in text:
            raise Forbidden("no spam")
        return text.upper()

    app = api_app(before_publish=before_publish)
    status, body = await call(app, "post", PATH, json={"text": "spam"},
                              headers=SYSTEM)  # fmt: skip
    assert status == 403
    assert body["error"] == {"code": "forbidden", "message": "no spam"}
    status, body = await call(app, "post", PATH, json={"text": "hi"},
                              headers=SYSTEM)  # fmt: skip
    assert status == 201
    path = f"{PATH}/{body['id']}"
    status, _ = await call(app, "patch", path, json={"text": "spam"},
                           headers=SYSTEM)  # fmt: skip
    assert status == 403
    status, _ = await call(app, "patch", path, json={"text": "ok"},
                           headers=SYSTEM)  # fmt: skip
    assert status == 200
    status, page = await call(app, "get", "/api/rooms/ops/history",
                              headers=SYSTEM)  # fmt: skip
    assert page["messages"][0]["text"] == "OK"
