"""The pure parts of DMs, typing and receipts: no socket, no loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sanic_chat import ChatConfig, User, protocol
from sanic_chat.errors import Forbidden, ProtocolError
from sanic_chat.limits import Throttle
from sanic_chat.session import (
    JoinInbox,
    MarkRead,
    MayMessage,
    Moderate,
    ReadReceipts,
    Reply,
    SendDirect,
    Session,
    Signal,
)

from .test_session import ALICE, Clock, World

parse_options: dict[str, Any] = {
    "default_room": "lobby",
    "max_text_length": 10,
}


class People(World):
    def __init__(self, *rooms: str) -> None:
        super().__init__(*rooms)
        self.blocked: set[str] = set()
        self.mark: bool | None = True

    def perform(self, action: Any) -> object:
        match action:
            case MayMessage(_, to):
                return to not in self.blocked
            case SendDirect():
                return "5-0"
            case MarkRead():
                return self.mark
            case ReadReceipts(room):
                return protocol.receipts(room, {})
        return super().perform(action)


def people(
    world: World, clock: Clock | None = None, moderates: bool = False
) -> Session:
    return Session(
        ALICE,
        ChatConfig(),
        rooms=world.rooms,
        can_refresh=False,
        moderates=moderates,
        clock=clock or Clock(),
        inbox=protocol.inbox_name(ALICE.id),
    )


def replies(actions: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(a.frame) for a in actions if isinstance(a, Reply)]


def test_inbox_names_are_never_room_names_and_never_shared() -> None:
    assert protocol.inbox_name("alice") == "@alice"
    assert protocol.inbox_name("a" * 63) == "@" + "a" * 63
    long, odd = protocol.inbox_name("a" * 64), protocol.inbox_name("a b/é")
    for name in (long, odd):
        assert name.startswith("@~") and len(name) == 34
        assert protocol.INBOX_RE.fullmatch(name)
        assert not protocol.valid_room(name)
    assert long != odd
    assert len(protocol.inbox_name("~x")) == 34  # "~" is not in the alphabet
    assert not protocol.valid_room("@alice")


def test_parse_people_frames() -> None:
    parse = protocol.parse
    assert parse(
        '{"type":"message","to":"bob","text":"hi","ref":"1"}', **parse_options
    ) == protocol.Direct("bob", "hi", "1")
    assert parse(
        '{"type":"message","to":null,"room":"a","text":"hi"}', **parse_options
    ) == protocol.Send("a", "hi")
    assert parse('{"type":"typing","to":"b"}', **parse_options) == (
        protocol.Typing(None, "b")
    )
    assert parse('{"type":"typing","room":"@x"}', **parse_options) == (
        protocol.Typing("@x")
    )
    assert parse('{"type":"read","room":"a","id":"1"}', **parse_options) == (
        protocol.Read("a", "1")
    )
    assert parse('{"type":"receipts","room":"a"}', **parse_options) == (
        protocol.Receipts("a")
    )
    with pytest.raises(ProtocolError) as info:
        parse('{"type":"read","room":"a","ref":"r"}', **parse_options)
    assert info.value.code == "bad_request" and info.value.ref == "r"
    with pytest.raises(ProtocolError) as info:
        parse('{"type":"message","to":"b","text":"x' + "x" * 10 + '"}',
              **parse_options)  # fmt: skip
    assert info.value.code == "too_large"
    for bad in ('"@"', '"@~abc"', '"@a b"', '"@' + "a" * 64 + '"'):
        with pytest.raises(ProtocolError):
            parse('{"type":"history","room":' + bad + "}", **parse_options)


def test_existing_frames_are_unchanged_without_the_new_arguments() -> None:
    user = {"id": "u", "name": "U"}
    assert (
        protocol.error("a", "b") == '{"type":"error","code":"a","message":"b"}'
    )
    assert protocol.joined("r", user) == protocol.encode(
        {"type": "joined", "room": "r", "user": user}
    )
    assert protocol.welcome(user, []) == protocol.encode(
        {"type": "welcome", "protocol": 1, "user": user, "rooms": []}
    )
    assert json.loads(protocol.joined("r", user, True, None, 3)) == {
        "type": "joined", "room": "r", "user": user, "recovered": True,
        "last_read": None, "unread": 3,
    }  # fmt: skip


def test_throttle_passes_one_per_interval_per_key_and_stays_bounded() -> None:
    clock = Clock()
    throttle = Throttle(2.0, size=2, clock=clock)
    assert throttle.allow("a") and not throttle.allow("a")
    assert throttle.allow("b")
    # Full of recent keys: the oldest ("a") is forgotten, "c" passes.
    assert throttle.allow("c") and not throttle.allow("b")
    assert throttle.allow("a")  # forgotten: early, but bounded
    clock.now += 2.0
    assert throttle.allow("c") and throttle.allow("b")
    assert not throttle.allow("c")


def test_the_inbox_is_joined_first_and_named_in_the_welcome() -> None:
    world = People()
    s = people(world)
    actions = world.run(s.open([protocol.Join("lobby")]))
    assert replies(actions)[0]["inbox"] == "@u1"
    actions = world.run(s.join_granted())
    assert actions[0] == JoinInbox("@u1")


def test_a_dm_asks_the_hook_then_sends_and_acks_in_the_own_inbox() -> None:
    world = People("lobby")
    s = people(world)
    actions = world.run(
        s.receive('{"type":"message","to":"bob","text":"hi","ref":"r"}')
    )
    assert actions[:2] == [
        MayMessage(ALICE, "bob"),
        SendDirect(ALICE, "bob", "hi", None, "r"),
    ]
    assert replies(actions) == [
        {"type": "ack", "ref": "r", "id": "5-0", "room": "@u1"}
    ]
    world.blocked.add("bob")
    actions = world.run(
        s.receive('{"type":"message","to":"bob","text":"hi","ref":"r"}')
    )
    assert [f["code"] for f in replies(actions)] == ["forbidden"]
    assert replies(actions)[0]["ref"] == "r"
    assert not [a for a in actions if isinstance(a, SendDirect)]


def test_a_dm_is_moderated_with_the_recipient_inbox_as_its_room() -> None:
    s = people(People("lobby"), moderates=True)
    steps = s.receive(
        '{"type":"message","to":"bob","text":"darn","meta":{"m":1},"ref":"r"}'
    )
    assert next(steps) == MayMessage(ALICE, "bob")
    assert steps.send(True) == Moderate(ALICE, "@bob", "darn", {"m": 1})
    assert steps.send("d**n") == SendDirect(
        ALICE, "bob", "d**n", {"m": 1}, "r"
    )
    steps = s.receive('{"type":"message","to":"bob","text":"x","ref":"r"}')
    next(steps)
    assert isinstance(steps.send(True), Moderate)
    refusal = steps.throw(Forbidden("not to bob"))
    assert isinstance(refusal, Reply)
    assert json.loads(refusal.frame) == {
        "type": "error", "code": "forbidden", "message": "not to bob",
        "ref": "r",
    }  # fmt: skip
    with pytest.raises(StopIteration):
        next(steps)


def test_a_dm_without_a_before_publish_hook_is_not_moderated() -> None:
    world = People("lobby")
    actions = world.run(
        people(world).receive('{"type":"message","to":"b","text":"x"}')
    )
    assert not [a for a in actions if isinstance(a, Moderate)]


def test_a_dm_carries_meta_checked_as_a_message_s() -> None:
    parse = protocol.parse
    assert parse(
        '{"type":"message","to":"bob","text":"hi","meta":{"reply_to":"1-0"}}',
        **parse_options,
    ) == protocol.Direct("bob", "hi", None, {"reply_to": "1-0"})
    for meta, code in (
        ("[1]", "bad_request"),
        ('"x"', "bad_request"),
        ('{"a":NaN}', "bad_request"),
        ('{"a":"' + "x" * 2048 + '"}', "too_large"),
    ):
        with pytest.raises(ProtocolError) as info:
            parse(
                '{"type":"message","to":"b","text":"x","ref":"m","meta":'
                + meta
                + "}",
                **parse_options,
            )
        assert info.value.code == code and info.value.ref == "m"
    user = User("a", "A").public()
    copy = json.loads(protocol.direct_payload("@b", "b", user, "t", 1))
    assert "meta" not in copy
    copy = json.loads(
        protocol.direct_payload("@b", "b", user, "t", 1, {"k": [1]})
    )
    assert copy["meta"] == {"k": [1]} and list(copy)[-1] == "meta"


def test_typing_is_throttled_per_room_before_any_hook() -> None:
    clock = Clock()
    world = People("lobby")
    s = people(world, clock)
    first = world.run(s.receive('{"type":"typing","room":"lobby"}'))
    assert first == [Signal("lobby", protocol.typing("lobby", ALICE.public()))]
    assert world.run(s.receive('{"type":"typing","room":"lobby"}')) == []
    assert len(world.run(s.receive('{"type":"typing","to":"bob"}'))) == 2
    assert world.run(s.receive('{"type":"typing","to":"bob"}')) == []
    clock.now += 2.0
    assert len(world.run(s.receive('{"type":"typing","room":"lobby"}'))) == 1


def test_read_signals_only_a_move_and_refuses_unknown_ids() -> None:
    world = People("lobby")
    s = people(world)
    moved = world.run(s.receive('{"type":"read","room":"lobby","id":"3"}'))
    assert moved == [
        MarkRead("lobby", "3"),
        Signal("lobby", protocol.read("lobby", ALICE.public(), "3")),
    ]
    world.mark = False
    assert world.run(s.receive('{"type":"read","room":"lobby","id":"2"}')) == [
        MarkRead("lobby", "2")
    ]
    world.mark = None
    actions = world.run(
        s.receive('{"type":"read","room":"lobby","id":"x","ref":"q"}')
    )
    assert replies(actions)[0]["code"] == "not_found"
    assert replies(actions)[0]["ref"] == "q"


def test_other_inboxes_are_forbidden_everywhere() -> None:
    world = People("lobby", "@u1")
    s = people(world)
    for frame in (
        '{"type":"join","room":"@bob"}',
        '{"type":"history","room":"@bob"}',
        '{"type":"read","room":"@bob","id":"1"}',
        '{"type":"receipts","room":"@bob"}',
        '{"type":"typing","room":"@bob"}',
        '{"type":"leave","room":"@u1"}',
    ):
        codes = [f["code"] for f in replies(world.run(s.receive(frame)))]
        assert codes == ["forbidden"], frame
