"""The wire contract, without sockets: frames in, frames or errors out.

Every server frame is compared as exact JSON text (field order included:
it is what clients receive, byte for byte).
"""

from __future__ import annotations

import pytest

from sanic_chat import Chat, ChatConfig, GuestAuthenticator, protocol
from sanic_chat.backends.memory import MemoryBroadcaster
from sanic_chat.errors import ProtocolError

ALICE = {"id": "u1", "name": "Alice"}


# --------------------------------------------------------------------------
# Server frames


def test_welcome() -> None:
    assert protocol.welcome(ALICE, ["lobby", "dev"]) == (
        '{"type":"welcome","protocol":1,"user":{"id":"u1","name":"Alice"},'
        '"rooms":["lobby","dev"]}'
    )


@pytest.mark.parametrize(
    "value",
    [
        {
            "type": "message",
            "text": 'é \u2028 "q" \\ \x00',
            "n": [1, 2.5, -0.0],
        },
        {"nested": {"a": [None, True, False, {}]}, 1: "int key", 2.5: "x"},
        ["a", ("tuple",), 10**30, float("nan"), float("inf")],
        'a bare "string"',
        12,
        None,
    ],
)
def test_encode_is_compact_json_dumps(value: object) -> None:
    """The encoder made once (no C encoder object per frame) writes what
    the standard library's compact ``dumps`` writes, byte for byte."""
    import json

    assert protocol.encode(value) == json.dumps(
        value, ensure_ascii=False, separators=(",", ":")
    )


def test_encode_refuses_what_json_cannot_write() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        protocol.encode({"type": "x", "when": object()})
    with pytest.raises(TypeError, match="keys must be"):
        protocol.encode({("a",): 1})


def test_joined_without_and_with_recovery() -> None:
    user = '"user":{"id":"u1","name":"Alice"}'
    assert protocol.joined("lobby", ALICE) == (
        '{"type":"joined","room":"lobby",' + user + "}"
    )
    assert protocol.joined("lobby", ALICE, True) == (
        '{"type":"joined","room":"lobby",' + user + ',"recovered":true}'
    )
    assert protocol.joined("lobby", ALICE, False) == (
        '{"type":"joined","room":"lobby",' + user + ',"recovered":false}'
    )


def test_left_without_and_with_reason() -> None:
    user = '"user":{"id":"u1","name":"Alice"}'
    assert protocol.left("lobby", ALICE) == (
        '{"type":"left","room":"lobby",' + user + "}"
    )
    assert protocol.left("lobby", ALICE, "forbidden") == (
        '{"type":"left","room":"lobby",' + user + ',"reason":"forbidden"}'
    )


def test_presence() -> None:
    assert protocol.presence("lobby", [ALICE], 3) == (
        '{"type":"presence","room":"lobby",'
        '"users":[{"id":"u1","name":"Alice"}],"count":3}'
    )


def test_resync_lagged_ack_refreshed_error_pong() -> None:
    assert protocol.resync("lobby") == '{"type":"resync","room":"lobby"}'
    assert protocol.lagged("lobby", 7) == (
        '{"type":"lagged","room":"lobby","skipped":7}'
    )
    assert protocol.ack("r1", "1-0", "lobby") == (
        '{"type":"ack","ref":"r1","id":"1-0","room":"lobby"}'
    )
    assert protocol.refreshed(1700000000) == (
        '{"type":"refreshed","expires_at":1700000000}'
    )
    assert protocol.refreshed(None) == (
        '{"type":"refreshed","expires_at":null}'
    )
    assert protocol.error("bad_request", "nope") == (
        '{"type":"error","code":"bad_request","message":"nope"}'
    )
    assert protocol.PONG == '{"type":"pong"}'


def test_message_payload_and_its_id_spliced_in() -> None:
    payload = protocol.message_payload("lobby", ALICE, "héllo </b>", 5)
    assert payload == (
        '{"type":"message","room":"lobby",'
        '"user":{"id":"u1","name":"Alice"},"text":"héllo </b>","ts":5}'
    )
    assert protocol.with_id(payload, "9-0") == '{"id":"9-0",' + payload[1:]


def test_history_splices_stored_messages_as_they_are() -> None:
    # Not valid JSON on purpose: proof that messages are not re-encoded.
    stored = ['{"id":"1"}', '{"id":"2","text":"a,b"}']
    assert protocol.history("lobby", stored, False) == (
        '{"type":"history","room":"lobby","messages":'
        '[{"id":"1"},{"id":"2","text":"a,b"}]}'
    )
    assert protocol.history("lobby", [], True) == (
        '{"type":"history","room":"lobby","messages":[],"truncated":true}'
    )
    assert protocol.history_body("lobby", stored[:1], True) == (
        '{"room":"lobby","messages":[{"id":"1"}],"truncated":true}'
    )
    assert protocol.history_body("lobby", [], False) == (
        '{"room":"lobby","messages":[]}'
    )


def test_fit_keeps_the_newest_that_fit() -> None:
    texts, truncated = protocol.fit(["aa", "bb", "cc"], str, 6)
    assert (texts, truncated) == (["bb", "cc"], True)
    assert protocol.fit(["aa"], str, None) == (["aa"], False)


# --------------------------------------------------------------------------
# Validation of what clients send


@pytest.mark.parametrize("name", ["lobby", "a", "x" * 64, "team-1:dev_2.b"])
def test_valid_room_names_pass(name: str) -> None:
    assert protocol.check_room(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "with space", "#control", "é", None, 3]
)
def test_invalid_room_names_are_refused_with_the_one_message(
    name: object,
) -> None:
    with pytest.raises(ProtocolError) as refused:
        protocol.check_room(name)
    assert refused.value.code == "bad_request"
    assert refused.value.message == protocol.ROOM_ERROR
    assert protocol.ROOM_ERROR == (
        "field 'room' must match ^[A-Za-z0-9_.:-]{1,64}$"
    )


def test_text_passes_at_its_limit() -> None:
    assert protocol.check_text(" x" * 5, 10) == " x" * 5


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        (None, "bad_request", "field 'text' must be a string"),
        ("", "bad_request", "field 'text' must not be empty"),
        (" \n\t", "bad_request", "field 'text' must not be empty"),
        (
            "a\ud800",
            "bad_request",
            "field 'text' contains a lone surrogate (not encodable as UTF-8)",
        ),
        ("x" * 11, "too_large", "text is longer than 10 characters"),
        # Checked in order: the first rule broken is the one reported.
        (" " * 11, "bad_request", "field 'text' must not be empty"),
    ],
)
def test_invalid_text_is_refused(
    text: object, code: str, message: str
) -> None:
    with pytest.raises(ProtocolError) as refused:
        protocol.check_text(text, 10)
    assert (refused.value.code, refused.value.message) == (code, message)


def test_ids_and_refs() -> None:
    assert protocol.check_id("r" * 128, "ref", 128) == "r" * 128
    for bad in ("r" * 129, 5, None, "\udc00"):
        with pytest.raises(ProtocolError) as refused:
            protocol.check_id(bad, "ref", 128)
        assert refused.value.message == (
            "field 'ref' must be a string of at most 128 characters"
        )


def parse(data: str | bytes) -> protocol.Command:
    return protocol.parse(data, default_room="lobby", max_text_length=10)


def test_parse_uses_the_shared_rules() -> None:
    assert parse("hi") == protocol.Send("lobby", "hi")
    assert parse('{"type":"message","room":"dev","text":"hi","ref":"r"}') == (
        protocol.Send("dev", "hi", "r")
    )
    assert parse('{"type":"join","room":"dev","since":"1-0"}') == (
        protocol.Join("dev", "1-0")
    )
    for frame, code, message in [
        ('{"type":"join","room":"no room"}', "bad_request", protocol.ROOM_ERROR),
        ("x" * 11, "too_large", "text is longer than 10 characters"),
        ('{"type":"message","room":"dev","text":" "}', "bad_request",
         "field 'text' must not be empty"),
        ('{"type":"message","room":"dev","text":"\\ud800"}', "bad_request",
         "field 'text' contains a lone surrogate (not encodable as UTF-8)"),
        ('{"type":"history","room":"dev","before":1}', "bad_request",
         "field 'before' must be a string of at most 128 characters"),
    ]:  # fmt: skip
        with pytest.raises(ProtocolError) as refused:
            parse(frame)
        assert (refused.value.code, refused.value.message) == (code, message)


async def test_chat_publish_refuses_with_the_same_rules() -> None:
    """``Chat.publish`` raises ValueError, with the socket's messages."""
    chat = Chat(
        ChatConfig(max_text_length=10),
        MemoryBroadcaster(),
        GuestAuthenticator(),
    )
    for room, text, message in [
        ("no room", "hi", protocol.ROOM_ERROR),
        ("lobby", " ", "field 'text' must not be empty"),
        ("lobby", "x" * 11, "text is longer than 10 characters"),
        ("lobby", "\ud800", "not encodable as UTF-8"),
    ]:
        with pytest.raises(ValueError) as refused:
            await chat.publish(room, text)
        assert message in str(refused.value)


def test_encode_without_the_c_accelerator_is_the_plain_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another Python (no ``c_make_encoder``, or one taking other
    arguments) gets ``JSONEncoder.encode`` itself, not an error."""
    import json

    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    assert protocol._direct(encoder) == encoder.encode
    monkeypatch.setattr(json.encoder, "c_make_encoder", lambda *a: 1 / 0)
    assert protocol._direct(encoder) == encoder.encode
