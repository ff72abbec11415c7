"""Names and ids are checked whole: no trailing newline slips through.

``re.match(r"^...$")`` accepts ``"staff\n"`` because ``$`` also matches
before a final newline; every check uses a full match instead.
"""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from sanic_chat import ConfigError, User, create_blueprint
from sanic_chat.backends import MemoryBroadcaster
from sanic_chat.identity import valid_display_name
from sanic_chat.protocol import valid_room

from .conftest import live, make_app, new_app

KEY = "k-0123456789abcdef"
SYSTEM = {"X-API-Key": KEY}

NEWLINE_ROOMS = ["staff\n", "x" * 64 + "\n", "staff\r\n", "\nstaff"]


@pytest.mark.parametrize("room", NEWLINE_ROOMS)
def test_room_names_with_a_newline_are_invalid(room: str) -> None:
    assert not valid_room(room)
    assert valid_room(room.strip())


def test_a_default_room_with_a_newline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="default_room"):
        new_app().blueprint(create_blueprint(default_room="lobby\n"))


def test_display_names_with_a_newline_are_invalid() -> None:
    assert valid_display_name("bob")
    assert not valid_display_name("bob\n")
    assert not valid_display_name("x" * 32 + "\n")


async def test_memory_ids_take_ascii_digits_only() -> None:
    broadcaster = MemoryBroadcaster()
    event = await broadcaster.publish("lobby", "x")
    assert event.id is not None
    epoch, _, seq = event.id.partition("-")
    assert (await broadcaster.history("lobby", limit=5, after=event.id)).found
    # SUPERSCRIPT TWO is str.isdigit() but int() refuses it; the same
    # number in ARABIC-INDIC DIGITs would be a second id of the event.
    arabic = seq.translate({ord("0") + d: 0x0660 + d for d in range(10)})
    for alias in (f"{epoch}-\u00b2", f"{epoch}-{arabic}", event.id + "\n"):
        page = await broadcaster.history("lobby", limit=5, after=alias)
        assert not page.found and page.events == [], alias


@pytest.mark.parametrize("room", NEWLINE_ROOMS)
async def test_a_room_with_a_newline_is_refused_at_connect(
    room: str,
) -> None:
    async with live(make_app()) as srv:
        with pytest.raises(InvalidStatus) as info:
            async with srv.client(room=room):
                pass
        assert info.value.response.status_code == 400
        assert b"bad_request" in info.value.response.body
        assert srv.chat.connection_count == 0


async def test_join_with_a_newline_is_refused_even_where_can_join_says_no() -> (
    None
):
    asked: list[str] = []

    def can_join(user: User, room: str) -> bool:
        asked.append(room)
        return room != "staff"

    async with (
        live(make_app(can_join=can_join)) as srv,
        srv.client() as alice,
    ):
        for room in NEWLINE_ROOMS:
            await alice.send({"type": "join", "room": room})
            error = await alice.expect("error", code="bad_request")
            assert "room" in error["message"]
        await alice.send({"type": "join", "room": "staff"})
        await alice.expect("error", code="forbidden")
        assert "staff\n" not in asked
        assert set(srv.chat.room_sizes()) == {"lobby"}


async def test_a_guest_name_with_a_newline_loses_it() -> None:
    # The guest authenticator strips surrounding whitespace from the name
    # it is offered: the name shown is "bob", never "bob\n".
    async with live(make_app()) as srv, srv.client(name="bob\n") as bob:
        assert bob.user["name"] == "bob"


@pytest.mark.parametrize("room", ["staff%0A", "staff%0D%0A", "x" * 64 + "%0A"])
async def test_the_http_api_refuses_a_room_with_a_newline(room: str) -> None:
    async with (
        live(make_app(api_key=KEY)) as srv,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
    ):
        for method, path, body in (
            ("GET", f"/api/rooms/{room}/history", None),
            ("GET", f"/api/rooms/{room}/presence", None),
            ("POST", f"/api/rooms/{room}/messages", {"text": "hi"}),
        ):
            reply = await http.request(method, path, headers=SYSTEM, json=body)
            assert reply.status_code == 400, (method, path, reply.text)
            assert reply.json()["error"]["code"] == "bad_request"


async def test_the_http_api_refuses_a_sender_name_with_a_newline() -> None:
    async with (
        live(make_app(api_key=KEY)) as srv,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
    ):
        reply = await http.post(
            "/api/rooms/lobby/messages", headers=SYSTEM,
            json={"text": "hi", "user": {"id": "ci", "name": "CI\n"}},
        )  # fmt: skip
        assert reply.status_code == 400
        assert reply.json()["error"]["fields"][0]["field"] == "user.name"
        assert await srv.chat.history("lobby") == []
