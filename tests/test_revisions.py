"""Pure parts: parsing edit, delete and meta; folding edits and deletes
onto history; the session's decisions about who may change a message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sanic_chat import Forbidden, ProtocolError, User, protocol
from sanic_chat.backends.base import Event
from sanic_chat.config import ChatConfig
from sanic_chat.hub.room import event_text
from sanic_chat.revisions import find, fold, page
from sanic_chat.session import (
    DeleteMessage,
    EditMessage,
    MayModerate,
    MayPublish,
    Moderate,
    Publish,
    ReadMessage,
    Reply,
    Session,
)

ANN = {"id": "ann", "name": "Ann"}
BOB = {"id": "bob", "name": "Bob"}


def parse(frame: dict[str, Any]) -> protocol.Command:
    return protocol.parse(
        json.dumps(frame), default_room="lobby", max_text_length=10
    )


def test_parse_edit_delete_and_meta() -> None:
    assert parse(
        {"type": "edit", "room": "a", "id": "1", "text": "t", "ref": "r"}
    ) == protocol.Edit("a", "1", "t", "r")
    assert parse({"type": "delete", "room": "a", "id": "1"}) == (
        protocol.Delete("a", "1")
    )
    send = parse(
        {"type": "message", "room": "a", "text": "t", "meta": {"k": [1]}}
    )
    assert send == protocol.Send("a", "t", None, {"k": [1]})


def test_a_refused_frame_echoes_its_ref_when_it_is_valid() -> None:
    with pytest.raises(ProtocolError) as info:
        parse({"type": "edit", "room": "a", "id": 1, "text": "t", "ref": "r"})
    assert info.value.ref == "r"
    assert (
        json.loads(
            protocol.error(info.value.code, info.value.message, info.value.ref)
        )["ref"]
        == "r"
    )
    for ref in (5, "x" * 129, None):
        with pytest.raises(ProtocolError) as info:
            parse({"type": "delete", "room": "a", "ref": ref})
        assert info.value.ref is None
    assert (
        protocol.error("c", "m") == '{"type":"error","code":"c","message":"m"}'
    )


def test_meta_rules() -> None:
    assert protocol.check_meta(None) is None
    limit = {"k": "x" * (protocol.MAX_META_BYTES - 8)}
    assert protocol.check_meta(limit) is limit
    with pytest.raises(ProtocolError, match="larger") as info:
        protocol.check_meta({"k": "x" * (protocol.MAX_META_BYTES - 7)})
    assert info.value.code == "too_large"
    # Counted in UTF-8 bytes, as sent.
    with pytest.raises(ProtocolError):
        protocol.check_meta({"k": "é" * 1100})
    for bad in ([], "s", 1, float("nan"), {"x": float("inf")}, {"x": {1}}):
        with pytest.raises(ProtocolError) as info:
            protocol.check_meta(bad)
        assert info.value.code == "bad_request"


def test_a_message_without_meta_is_the_same_bytes_as_before() -> None:
    assert protocol.message_payload("r", ANN, "t", 1) == (
        '{"type":"message","room":"r","user":{"id":"ann","name":"Ann"},'
        '"text":"t","ts":1}'
    )
    assert protocol.message_payload("r", ANN, "t", 1, {}).endswith(
        ',"ts":1,"meta":{}}'
    )


def message(n: int, user: dict[str, str] = ANN, **meta: Any) -> Event:
    payload = protocol.message_payload("r", user, f"m{n}", n, meta or None)
    return Event("r", payload, f"{n}-0")


def edit(n: int, target: int, text: str) -> Event:
    return Event(
        "r", protocol.edited("r", f"{target}-0", text, BOB, n), f"{n}-0"
    )


def delete(n: int, target: int) -> Event:
    return Event("r", protocol.deleted("r", f"{target}-0", BOB, n), f"{n}-0")


def texts(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(event_text(e)) for e in events]


def test_fold_applies_the_last_edit_and_a_final_delete() -> None:
    events = [
        message(1, k="v"), message(2), edit(3, 1, "a"), edit(4, 1, "b"),
        delete(5, 2), edit(6, 2, "too late"), message(7),
    ]  # fmt: skip
    folded = fold(events, keep_revisions=False)
    assert [e.id for e in folded] == ["1-0", "2-0", "7-0"]
    one, two, _ = texts(folded)
    assert one == {
        "id": "1-0", "type": "message", "room": "r", "user": ANN,
        "text": "b", "ts": 1, "meta": {"k": "v"}, "edited_ts": 4,
    }  # fmt: skip
    assert two == {
        "id": "2-0", "type": "message", "room": "r", "user": ANN, "ts": 2,
        "deleted": True,
    }  # fmt: skip
    assert folded[2] is events[6]  # untouched messages are not re-encoded
    replay = fold(events, keep_revisions=True)
    assert [e.id for e in replay] == [e.id for e in events]
    assert texts(replay)[2] == {
        "type": "edited", "room": "r", "id": "1-0", "text": "a",
        "user": BOB, "edited_ts": 3,
    }  # fmt: skip


def test_fold_ignores_edits_of_messages_it_does_not_hold_and_garbage() -> None:
    events = [edit(1, 99, "x"), Event("r", '{"type":"edited"', "2-0"),
              message(3)]  # fmt: skip
    assert [e.id for e in fold(events, keep_revisions=False)] == ["3-0"]


def test_find_and_page() -> None:
    events = fold(
        [message(n) for n in range(1, 6)] + [delete(6, 5)],
        keep_revisions=False,
    )
    assert find(events, "2-0")["text"] == "m2"  # type: ignore[index]
    assert find(events, "5-0") is None  # deleted
    assert find(events, "6-0") is None  # the delete itself
    assert [e.id for e in page(events, 2).events] == ["4-0", "5-0"]
    assert [e.id for e in page(events, 2, before="4-0").events] == [
        "2-0", "3-0"
    ]  # fmt: skip
    assert [e.id for e in page(events, 2, after="1-0").events] == [
        "2-0", "3-0"
    ]  # fmt: skip
    assert not page(events, 2, before="6-0").found
    assert not page(events, 2, after="nope").found


def session(user: dict[str, str] = ANN, moderates: bool = True) -> Session:
    return Session(
        User(user["id"], user["name"]),
        ChatConfig(),
        rooms={"r"},
        can_refresh=False,
        moderates=moderates,
    )


def test_a_non_author_needs_can_moderate() -> None:
    steps = session(BOB).receive(
        '{"type":"delete","room":"r","id":"1-0","ref":"x"}'
    )
    assert next(steps) == ReadMessage("r", "1-0")
    assert steps.send({"user": ANN, "text": "t"}) == MayModerate(
        User("bob", "Bob"), "r"
    )
    reply = steps.send(False)
    assert isinstance(reply, Reply)
    assert json.loads(reply.frame) == {
        "type": "error", "code": "forbidden", "ref": "x", "room": "r",
        "message": "only its author or a moderator may change this message",
    }  # fmt: skip


def test_the_author_edits_through_before_publish() -> None:
    ann = User("ann", "Ann")
    steps = session().receive(
        '{"type":"edit","room":"r","id":"1-0","text":"new"}'
    )
    assert next(steps) == MayPublish(ann, "r")
    assert steps.send(True) == ReadMessage("r", "1-0")
    meta = {"k": 1}
    assert steps.send({"user": ANN, "meta": meta}) == Moderate(
        ann, "r", "new", meta
    )
    assert steps.send("NEW") == EditMessage("r", "1-0", ann, "NEW")
    with pytest.raises(StopIteration):
        steps.send(None)
    steps = session().receive('{"type":"delete","room":"r","id":"1-0"}')
    assert next(steps) == ReadMessage("r", "1-0")
    assert steps.send({"user": ANN}) == DeleteMessage("r", "1-0", ann)


def test_before_publish_refusing_is_forbidden_with_its_reason() -> None:
    steps = session().receive(
        '{"type":"message","room":"r","text":"t","ref":"q"}'
    )
    next(steps)
    assert isinstance(steps.send(True), Moderate)
    reply = steps.throw(Forbidden("not here"))
    assert isinstance(reply, Reply)
    assert json.loads(reply.frame) == {
        "type": "error", "code": "forbidden", "message": "not here",
        "ref": "q", "room": "r",
    }  # fmt: skip


def test_without_before_publish_a_message_is_not_moderated() -> None:
    steps = session(moderates=False).receive(
        '{"type":"message","room":"r","text":"t"}'
    )
    next(steps)
    assert steps.send(True) == Publish("r", User("ann", "Ann"), "t", None)
