"""Names and ids are checked whole: no trailing newline slips through.

``re.match(r"^...$")`` accepts ``"staff\n"`` because ``$`` also matches
before a final newline; every check uses a full match instead.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from sanic_chat import SYSTEM_USER, ConfigError, User, create_blueprint
from sanic_chat.backends import MemoryBroadcaster
from sanic_chat.identity import reserved_name, valid_display_name
from sanic_chat.protocol import valid_room

from .conftest import live, make_app, new_app, run_example

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


# Display names: refused by Unicode category, reserved names, visibility.

BAD_NAMES = {
    "C1 control": "bob\x85",
    "C1 CSI": "\x9b31mbob",
    "right-to-left override": "\u202eevil.exe",
    "left-to-right mark": "bob\u200e",
    "bidi isolate": "\u2066bob\u2069",
    "line separator": "bob\u2028alice",
    "paragraph separator": "bob\u2029",
    "zero-width space only": "\u200b",
    "zero-width space inside": "Sys\u200btem",
    "zero-width joiner only": "\u200d\u200d",
    "byte order mark": "\ufeffbob",
    "soft hyphen": "bo\u00adb",
    "tag characters": "bob\U000e0041\U000e0042",
    "private use": "bob\ue000",
    "unassigned": "bob\U0010fffe",
    "combining mark only": "\u0301\u0301",
    "hangul filler only": "\u3164\u3164",
    "braille blank only": "\u2800",
    "spaces only": "   ",
    "angle brackets": "<b>bob</b>",
    "too long": "x" * 33,
    "reserved": "System",
    "reserved, lower case": "system",
    "reserved, full width": "\uff33\uff39\uff33\uff34\uff25\uff2d",
    "reserved, with a joiner": "Sys\u200dtem",
    "newline": "bob\n",
}
GOOD_NAMES = {
    "plain": "alice",
    "accents": "Zoë Ñúñez",
    "CJK": "李小龍",
    "family emoji (joiners)": "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "rainbow flag": "\U0001f3f3\ufe0f\u200d\U0001f308",
    "Persian with a non-joiner": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    "RTL script": "\u05e9\u05dc\u05d5\u05dd",
    "similar to reserved": "Systems",
    "32 characters": "x" * 32,
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_display_names_are_refused_by_category_and_reservation(
    name: str,
) -> None:
    assert not valid_display_name(name)


@pytest.mark.parametrize("name", GOOD_NAMES.values(), ids=GOOD_NAMES.keys())
def test_display_names_of_every_script_and_emoji_pass(name: str) -> None:
    assert valid_display_name(name)


def test_the_reserved_name_is_the_system_users() -> None:
    assert reserved_name(SYSTEM_USER.name)
    assert reserved_name(" SYSTEM ")
    assert not reserved_name("Systemic")


async def test_guests_with_a_bad_name_get_400_before_the_upgrade() -> None:
    async with live(make_app()) as srv:
        for label, name in BAD_NAMES.items():
            if valid_display_name(name.strip()):
                # Surrounding whitespace (even U+0085 or U+2029) is
                # stripped first: what is left is shown, and is fine.
                async with srv.client(name=name) as guest:
                    assert guest.user["name"] == name.strip() != name
                continue
            with pytest.raises(InvalidStatus) as info:
                async with srv.client(name=name):
                    pass
            response = info.value.response
            assert response.status_code == 400, label
            assert b"bad_request" in response.body, label
        for label, name in GOOD_NAMES.items():
            async with srv.client(name=name) as guest:
                assert guest.user["name"] == name, label
                assert guest.user["id"].startswith("guest-")
        assert srv.chat.connection_count == 0


async def test_the_api_refuses_bad_sender_names_but_publishes_as_system() -> (
    None
):
    async with (
        live(make_app(api_key=KEY)) as srv,
        srv.client() as alice,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as http,
    ):
        post = "/api/rooms/lobby/messages"
        for label, name in BAD_NAMES.items():
            reply = await http.post(
                post, headers=SYSTEM,
                json={"text": "hi", "user": {"id": "x", "name": name}},
            )  # fmt: skip
            assert reply.status_code == 400, label
            assert reply.json()["error"]["code"] == "bad_request", label
        await alice.nothing()
        assert await srv.chat.history("lobby") == []
        # The system itself still speaks as "System": from the API...
        reply = await http.post(post, headers=SYSTEM, json={"text": "up"})
        assert reply.status_code == 201
        message = await alice.expect("message", text="up")
        assert message["user"] == SYSTEM_USER.public()
        # ... and from server code.
        await srv.chat.publish("lobby", "deployed")
        message = await alice.expect("message", text="deployed")
        assert message["user"] == {"id": "system", "name": "System"}
        family = GOOD_NAMES["family emoji (joiners)"]
        reply = await http.post(
            post, headers=SYSTEM,
            json={"text": "ok", "user": {"id": "f", "name": family}},
        )  # fmt: skip
        assert reply.status_code == 201
        assert (await alice.expect("message", text="ok"))["user"]["name"] == (
            family
        )


@pytest.mark.slow  # the example app in a subprocess
async def test_the_example_login_refuses_bad_names_and_system(
    tmp_path: Path,
) -> None:
    with run_example(tmp_path / "example.log") as port:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}"
        ) as http:
            for label, name in BAD_NAMES.items():
                reply = await http.post("/login", json={"name": name})
                if valid_display_name(name.strip()):  # stripped, as guests
                    assert reply.json()["user"]["name"] == name.strip()
                    continue
                assert reply.status_code == 400, label
                assert reply.json()["error"]["code"] == "bad_request"
                assert "chat_token" not in reply.cookies, label
            for label, name in GOOD_NAMES.items():
                reply = await http.post("/login", json={"name": name})
                assert reply.status_code == 200, label
                assert reply.json()["user"]["name"] == name, label
