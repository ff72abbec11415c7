"""The session without I/O: frames in, actions and frames out.

No socket, no server, no event loop: each test drives a
:class:`~sanic_chat.session.Session` with plain calls, answering its
actions from a :class:`World` that stands for the hub, the hooks and the
authenticator, and asserts on the actions it asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from sanic_chat import ChatConfig, User, protocol
from sanic_chat.errors import BroadcasterUnavailable, ProtocolError
from sanic_chat.metrics import Metrics
from sanic_chat.session import (
    Action,
    Close,
    Expire,
    Join,
    Leave,
    MayJoin,
    MayPublish,
    Publish,
    ReadHistory,
    ReadPresence,
    Reply,
    Session,
    SetUser,
    Steps,
    Verify,
    WaitWritable,
)

ALICE = User("u1", "Alice", expires_at=1_000.0)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class World:
    """What the endpoint does for a session, in memory."""

    def __init__(self, *rooms: str) -> None:
        self.rooms = set(rooms)
        self.no_join: set[str] = set()
        self.no_publish: set[str] = set()
        self.failures: dict[type, Exception] = {}
        self.verified: User | None = None
        self.user: User | None = None

    def run(self, steps: Steps) -> list[Action]:
        """Drive ``steps`` to their end; the actions asked for, in order."""
        actions: list[Action] = []
        result: object = None
        failure: Exception | None = None
        while True:
            try:
                if failure is None:
                    action = steps.send(result)
                else:
                    action = steps.throw(failure)
            except StopIteration:
                return actions
            actions.append(action)
            result, failure = None, self.failures.get(type(action))
            if failure is None:
                result = self.perform(action)

    def perform(self, action: Action) -> object:
        match action:
            case MayJoin(_, room):
                return room not in self.no_join
            case MayPublish(_, room):
                return room not in self.no_publish
            case Join(room, _):
                self.rooms.add(room)
            case Leave(room, _):
                self.rooms.discard(room)
            case Publish():
                return "17-0"
            case ReadHistory(room):
                return protocol.history(room, [], False)
            case ReadPresence(room):
                return protocol.presence(room, [], 0)
            case Verify():
                return self.verified
            case SetUser(user):
                self.user = user
        return None


def session(
    world: World,
    user: User = ALICE,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    can_refresh: bool = True,
    **options: Any,
) -> Session:
    return Session(
        user,
        ChatConfig(**options),
        rooms=world.rooms,
        can_refresh=can_refresh,
        metrics=metrics,
        clock=clock or Clock(),
    )


def frames(actions: list[Action]) -> list[dict[str, Any]]:
    return [json.loads(a.frame) for a in actions if isinstance(a, Reply)]


def codes(actions: list[Action]) -> list[str]:
    return [f["code"] for f in frames(actions) if f["type"] == "error"]


def error(
    code: str, message: str, ref: str | None = None, room: str | None = None
) -> Reply:
    return Reply(protocol.error(code, message, ref, room))


# --------------------------------------------------------------------------
# Setup


def test_open_asks_for_each_room_then_welcomes_with_those_granted() -> None:
    world = World()
    world.no_join.add("staff")
    s = session(world)
    requests = [protocol.Join("lobby"), protocol.Join("staff", "5-0")]
    assert world.run(s.open(requests)) == [
        MayJoin(ALICE, "lobby"),
        MayJoin(ALICE, "staff"),
        Reply(protocol.welcome(ALICE.public(), ["lobby"])),
        error("forbidden", "not allowed in room 'staff'", room="staff"),
        Expire(1_000.0),
    ]
    assert world.run(s.join_granted()) == [WaitWritable(), Join("lobby", None)]
    assert world.run(s.join_granted()) == []  # granted once


def test_a_connection_that_never_expires_gets_no_deadline() -> None:
    world = World()
    actions = world.run(session(world, User("g", "Guest")).open([]))
    assert actions[-1] == Expire(None)
    assert frames(actions) == [
        {"type": "welcome", "protocol": 1, "user": {"id": "g", "name": "Guest"},
         "rooms": []},
    ]  # fmt: skip


def test_the_expiry_deadline_closes_with_1008_token_expired() -> None:
    world = World()
    expire = world.run(session(world).open([]))[-1]
    assert isinstance(expire, Expire)
    assert (expire.at, expire.code, expire.reason) == (
        1_000.0,
        1008,
        "token expired",
    )


def test_a_failing_hook_at_open_fails_the_connection() -> None:
    world = World()
    world.failures[MayJoin] = RuntimeError("hook broke")
    with pytest.raises(RuntimeError, match="hook broke"):
        world.run(session(world).open([protocol.Join("lobby")]))


def test_a_failed_first_join_is_an_error_and_the_next_still_joins() -> None:
    world = World()
    s = session(world)
    world.run(s.open([protocol.Join("a"), protocol.Join("b")]))
    world.failures[Join] = ProtocolError("too_many_rooms", "too many")
    assert world.run(s.join_granted()) == [
        WaitWritable(),
        Join("a", None),
        error("too_many_rooms", "too many", room="a"),
        WaitWritable(),
        Join("b", None),
        error("too_many_rooms", "too many", room="b"),
    ]


# --------------------------------------------------------------------------
# Parsing and membership


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ("{nope", "bad_request", "frame is not valid JSON"),
        (b"\x00", "bad_request", "binary frames are not supported; send JSON "
         "text"),
        ('{"type":5}', "bad_request", "field 'type' must be a string"),
        ('{"type":"dance"}', "bad_request", "unknown frame type 'dance'"),
        ('{"type":"join","room":"a b"}', "bad_request", protocol.ROOM_ERROR),
        ("x" * 11, "too_large", "text is longer than 10 characters"),
    ],
)  # fmt: skip
def test_a_frame_that_does_not_parse_gets_its_error(
    data: str | bytes, code: str, message: str
) -> None:
    world = World("lobby")
    s = session(world, max_text_length=10)
    assert world.run(s.receive(data)) == [error(code, message)]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message", "room": "dev", "text": "hi"},
        {"type": "history", "room": "dev"},
        {"type": "presence", "room": "dev"},
    ],
)
def test_rooms_not_joined_cannot_be_used(frame: dict[str, str]) -> None:
    world = World("lobby")
    assert world.run(session(world).receive(json.dumps(frame))) == [
        error("not_joined", "join room 'dev' first", room="dev")
    ]


def test_plain_text_goes_to_the_default_room() -> None:
    world = World("general")
    s = session(world, default_room="general")
    assert world.run(s.receive("hello")) == [
        MayPublish(ALICE, "general"),
        Publish("general", ALICE, "hello"),
    ]
    world.rooms.clear()
    assert world.run(s.receive("hello")) == [
        error("not_joined", "join room 'general' first")
    ]


# --------------------------------------------------------------------------
# Requests


def test_a_message_with_a_ref_is_published_then_acked() -> None:
    world = World("dev")
    frame = {"type": "message", "room": "dev", "text": "hi", "ref": "r1"}
    assert world.run(session(world).receive(json.dumps(frame))) == [
        MayPublish(ALICE, "dev"),
        Publish("dev", ALICE, "hi", None, "r1"),
        Reply(protocol.ack("r1", "17-0", "dev")),
    ]


def test_a_refused_publish_or_join_is_forbidden_and_not_performed() -> None:
    world = World("dev")
    world.no_publish.add("dev")
    world.no_join.add("staff")
    s = session(world)
    message = {"type": "message", "room": "dev", "text": "hi"}
    assert world.run(s.receive(json.dumps(message))) == [
        MayPublish(ALICE, "dev"),
        error("forbidden", "not allowed in room 'dev'", room="dev"),
    ]
    assert world.run(s.receive('{"type":"join","room":"staff"}')) == [
        MayJoin(ALICE, "staff"),
        error("forbidden", "not allowed in room 'staff'", room="staff"),
    ]
    assert world.rooms == {"dev"}


def test_join_leave_history_presence_and_ping() -> None:
    world = World()
    s = session(world, max_unsent_bytes=1 << 20)
    join = '{"type":"join","room":"dev","since":"3-0"}'
    assert world.run(s.receive(join)) == [
        MayJoin(ALICE, "dev"),
        Join("dev", "3-0"),
    ]
    history = '{"type":"history","room":"dev","limit":5,"before":"9-0"}'
    assert world.run(s.receive(history)) == [
        ReadHistory("dev", 5, "9-0", max_bytes=1 << 18),
        Reply(protocol.history("dev", [], False)),
    ]
    assert world.run(s.receive('{"type":"presence","room":"dev"}')) == [
        ReadPresence("dev"),
        Reply(protocol.presence("dev", [], 0)),
    ]
    assert world.run(s.receive('{"type":"ping"}')) == [Reply(protocol.PONG)]
    assert world.run(s.receive('{"type":"leave","room":"dev"}')) == [
        Leave("dev", None)
    ]
    assert world.rooms == set()


# --------------------------------------------------------------------------
# Failures of actions


def test_failures_of_actions_become_error_frames(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World("dev")
    s = session(world)
    message = json.dumps({"type": "message", "room": "dev", "text": "hi"})
    world.failures[Publish] = BroadcasterUnavailable("redis down")
    assert world.run(s.receive(message))[-1] == error(
        "unavailable", "chat backend unavailable, retry", room="dev"
    )
    world.failures[ReadHistory] = ProtocolError("not_found", "gone")
    history = '{"type":"history","room":"dev"}'
    assert world.run(s.receive(history))[-1] == error(
        "not_found", "gone", room="dev"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.logs_errors
def test_an_unexpected_failure_is_internal_error_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World("dev")
    world.failures[ReadPresence] = KeyError("secret detail")
    presence = '{"type":"presence","room":"dev"}'
    actions = world.run(session(world).receive(presence))
    assert actions == [
        ReadPresence("dev"),
        error("internal_error", "internal server error", room="dev"),
    ]
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in logged] == ["error while serving session"]
    assert logged[0].exc_info is not None


def test_cancellation_is_not_turned_into_an_error_frame() -> None:
    world = World("dev")
    steps = session(world).receive('{"type":"presence","room":"dev"}')
    assert next(steps) == ReadPresence("dev")
    with pytest.raises(asyncio.CancelledError):
        steps.throw(asyncio.CancelledError())


# --------------------------------------------------------------------------
# Rate limit


def test_frames_over_the_burst_are_refused_then_the_socket_closed() -> None:
    world, clock, metrics = World(), Clock(), Metrics()
    s = session(
        world,
        clock=clock,
        metrics=metrics,
        rate_limit=1,
        rate_burst=2,
        rate_limit_strikes=3,
    )
    ping = '{"type":"ping"}'
    limited = error(
        "rate_limited",
        "too many frames; at most 1 per second, this one was not processed",
    )
    assert world.run(s.receive(ping)) == [Reply(protocol.PONG)]
    assert world.run(s.receive(ping)) == [Reply(protocol.PONG)]
    assert world.run(s.receive(ping)) == [limited]
    assert world.run(s.receive(ping)) == [limited]
    assert world.run(s.receive(ping)) == [Close(1008, "rate limit exceeded")]
    assert metrics.rate_limited == 3
    assert s.max_strikes == 3


def test_a_second_of_calm_refills_and_forgives() -> None:
    world, clock = World(), Clock()
    s = session(world, clock=clock, rate_limit=1, rate_burst=1,
                rate_limit_strikes=2)  # fmt: skip
    ping = '{"type":"ping"}'
    assert world.run(s.receive(ping)) == [Reply(protocol.PONG)]
    assert codes(world.run(s.receive(ping))) == ["rate_limited"]
    clock.now += 1.0
    assert world.run(s.receive(ping)) == [Reply(protocol.PONG)]
    assert s.bucket.strikes == 0


def test_large_frames_cost_one_token_per_16_kib() -> None:
    world, clock = World("lobby"), Clock()
    s = session(world, clock=clock, rate_limit=1, rate_burst=3,
                max_text_length=100_000)  # fmt: skip
    # 1 + 32768 // 16384 = 3 tokens: the whole burst, then nothing.
    assert world.run(s.receive("x" * 32_768))[0] == MayPublish(ALICE, "lobby")
    assert codes(world.run(s.receive('{"type":"ping"}'))) == ["rate_limited"]


def test_join_and_leave_pay_the_churn_cost() -> None:
    world, clock = World(), Clock()
    s = session(world, clock=clock, rate_limit=1, rate_burst=10, churn_cost=5)
    assert world.run(s.receive('{"type":"join","room":"a"}'))[-1] == Join(
        "a", None
    )
    assert world.run(s.receive('{"type":"leave","room":"a"}')) == [
        Leave("a", None)
    ]
    again = world.run(s.receive('{"type":"join","room":"a"}'))
    assert codes(again) == ["rate_limited"]
    assert world.rooms == set()
    # A join that does not parse pays no churn: it is only an error.
    assert codes(world.run(s.receive('{"type":"join"}'))) == ["rate_limited"]
    clock.now += 1.0
    assert codes(world.run(s.receive('{"type":"join"}'))) == ["bad_request"]


def test_replies_are_charged_at_one_token_per_64_kib() -> None:
    world, clock = World(), Clock()
    s = session(world, clock=clock, rate_limit=2, rate_burst=4)
    s.reading(1_000)
    assert s.pay_replies(1_000 + 65_535) is None  # under one token: free
    assert s.pay_replies(1_000 + 3 * 65_536) == 0.0  # 4 - 3 = 1 left
    s.reading(1_000 + 3 * 65_536)
    # 5 more tokens: 1 - 5 = -4, so (1 + 4) / 2 seconds before a frame.
    assert s.pay_replies(1_000 + 8 * 65_536) == 2.5
    clock.now += 2.5
    assert world.run(s.receive('{"type":"ping"}')) == [Reply(protocol.PONG)]


# --------------------------------------------------------------------------
# Refresh


def test_refresh_for_the_same_user_extends_and_asks_for_rooms_again() -> None:
    world = World("staff", "lobby")
    world.no_join.add("staff")
    world.verified = User("u1", "Other name", {"role": "x"}, 2_000.0)
    s = session(world)
    actions = world.run(s.receive('{"type":"refresh","token":"t2"}'))
    renewed = User("u1", "Alice", {"role": "x"}, 2_000.0)
    assert actions == [
        Verify("t2"),
        SetUser(renewed),
        Expire(2_000.0),
        MayJoin(renewed, "lobby"),
        MayJoin(renewed, "staff"),
        Leave("staff", "forbidden"),
        Reply(protocol.refreshed(2_000.0)),
    ]
    assert world.user is s.user
    assert (s.user.name, s.user.claims, s.user.expires_at) == (
        "Alice",
        {"role": "x"},
        2_000.0,
    )
    assert world.rooms == {"lobby"}


@pytest.mark.parametrize("verified", [None, User("u2", "Mallory")])
def test_refresh_with_a_token_of_nobody_or_someone_else_is_forbidden(
    verified: User | None,
) -> None:
    world = World("lobby")
    world.verified = verified
    s = session(world)
    assert world.run(s.receive('{"type":"refresh","token":"t2"}')) == [
        Verify("t2"),
        error("forbidden", "token invalid or for another user"),
    ]
    assert s.user is ALICE


def test_refresh_without_a_refreshing_authenticator_is_a_bad_request() -> None:
    world = World()
    s = session(world, can_refresh=False)
    assert world.run(s.receive('{"type":"refresh","token":"t2"}')) == [
        error("bad_request", "this server's authenticator cannot refresh")
    ]


# --------------------------------------------------------------------------
# Errors name their request: its ref and room


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "join", "room": "staff"}, "forbidden"),
        ({"type": "leave", "room": "@u1"}, "forbidden"),
        ({"type": "message", "room": "dev", "text": "hi"}, "not_joined"),
        ({"type": "edit", "room": "dev", "id": "1-0", "text": "x"},
         "not_joined"),
        ({"type": "delete", "room": "dev", "id": "1-0"}, "not_joined"),
        ({"type": "history", "room": "dev"}, "not_joined"),
        ({"type": "presence", "room": "dev"}, "not_joined"),
        ({"type": "typing", "room": "dev"}, "not_joined"),
        ({"type": "read", "room": "dev", "id": "1-0"}, "not_joined"),
        ({"type": "receipts", "room": "dev"}, "not_joined"),
        # Refused while parsing: the ref and room are read from the object.
        ({"type": "history", "room": "dev", "limit": 0}, "bad_request"),
        ({"type": "message", "room": "dev", "text": 5}, "bad_request"),
        ({"type": "join", "room": "dev", "since": 5}, "bad_request"),
    ],
)  # fmt: skip
def test_errors_echo_the_requests_ref_and_room(
    frame: dict[str, Any], code: str
) -> None:
    world = World("lobby")
    world.no_join.add("staff")
    s = session(world)
    actions = world.run(s.receive(json.dumps({**frame, "ref": "r9"})))
    error = frames(actions)[-1]
    assert error["code"] == code, error
    assert (error["ref"], error["room"]) == ("r9", frame["room"])
    # Without a ref, the room alone.
    error = frames(world.run(s.receive(json.dumps(frame))))[-1]
    assert "ref" not in error
    assert error["room"] == frame["room"]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message", "to": "bob", "text": ""},
        {"type": "typing", "to": ""},
        {"type": "refresh", "token": "t"},
        {"type": "dance"},
        {"type": "message", "room": "no room!", "text": "x"},
    ],
)
def test_errors_of_requests_without_a_valid_room_echo_the_ref_only(
    frame: dict[str, Any],
) -> None:
    world = World("lobby")
    s = session(world, can_refresh=False)
    error = frames(world.run(s.receive(json.dumps({**frame, "ref": "r"}))))
    assert error[-1]["ref"] == "r"
    assert "room" not in error[-1]


def test_plain_text_and_rate_limited_errors_name_no_room() -> None:
    world = World()
    s = session(world, rate_burst=1, rate_limit=0.001)
    assert world.run(s.receive("hello")) == [
        error("not_joined", "join room 'lobby' first")
    ]
    frame = {"type": "message", "room": "dev", "text": "x", "ref": "r"}
    limited = frames(world.run(s.receive(json.dumps(frame))))
    assert limited[-1]["code"] == "rate_limited"
    assert "ref" not in limited[-1] and "room" not in limited[-1]


def test_a_refresh_answer_echoes_the_requests_ref() -> None:
    world = World("lobby")
    world.verified = User("u1", "Alice", {}, 2_000.0)
    s = session(world)
    actions = world.run(
        s.receive('{"type":"refresh","token":"t2","ref":"r9"}')
    )
    assert actions[-1] == Reply(
        '{"type":"refreshed","expires_at":2000.0,"ref":"r9"}'
    )


def test_join_and_leave_pass_the_requests_ref_to_the_hub() -> None:
    world = World("lobby")
    s = session(world)
    join = world.run(s.receive('{"type":"join","room":"dev","ref":"j1"}'))
    assert join[-1] == Join("dev", None, "j1")
    leave = world.run(s.receive('{"type":"leave","room":"dev","ref":"l1"}'))
    assert leave[-1] == Leave("dev", None, "l1")


def test_with_ref_appends_the_ref_as_the_last_field() -> None:
    frame = protocol.presence("dev", [{"id": "u1", "name": "A"}], 1)
    assert json.loads(protocol.with_ref(frame, 'a"b')) == {
        **json.loads(frame),
        "ref": 'a"b',
    }
    assert protocol.with_ref(frame, None) is frame
