"""The wire contract, without sockets: frames in, frames or errors out.

Every server frame is compared as exact JSON text (field order included:
it is what clients receive, byte for byte).
"""

from __future__ import annotations

from sanic_chat import protocol

ALICE = {"id": "u1", "name": "Alice"}


# --------------------------------------------------------------------------
# Server frames


def test_welcome() -> None:
    assert protocol.welcome(ALICE, ["lobby", "dev"]) == (
        '{"type":"welcome","protocol":1,"user":{"id":"u1","name":"Alice"},'
        '"rooms":["lobby","dev"]}'
    )


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
