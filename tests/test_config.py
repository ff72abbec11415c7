"""Configuration: keywords over ``app.config.CHAT_*`` over defaults."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

import sanic_chat
from sanic_chat import ChatConfig, ConfigError

from .conftest import live, make_app, new_app


def test_defaults() -> None:
    config = ChatConfig.resolve({}, {})
    assert config.default_room == "lobby"
    assert config.history_size == 100
    assert config.send_queue_size == 100
    assert config.slow_consumer == "close"
    assert config.max_text_length == 4000
    assert config.broadcaster_url == "memory://"


def test_app_config_is_read_and_keywords_win() -> None:
    app_config = {"CHAT_DEFAULT_ROOM": "general", "CHAT_HISTORY_SIZE": "7"}
    config = ChatConfig.resolve({}, app_config)
    assert (config.default_room, config.history_size) == ("general", 7)
    config = ChatConfig.resolve({"default_room": "kw"}, app_config)
    assert (config.default_room, config.history_size) == ("kw", 7)


@pytest.mark.parametrize(
    ("options", "app_config", "message"),
    [
        ({"history_size": 0}, {}, "history_size"),
        ({}, {"CHAT_SEND_QUEUE_SIZE": "lots"}, "CHAT_SEND_QUEUE_SIZE"),
        ({}, {"CHAT_PRESENCE_EVENTS": "maybe"}, "CHAT_PRESENCE_EVENTS"),
        ({"slow_consumer": "ignore"}, {}, "slow_consumer"),
        ({"default_room": "no spaces"}, {}, "default_room"),
        ({"path": "ws"}, {}, "path"),
        ({"colour": "blue"}, {}, "colour"),
    ],
)
def test_invalid_settings_name_the_key(
    options: dict[str, object], app_config: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ChatConfig.resolve(options, app_config)


def test_unknown_keyword_fails_at_once() -> None:
    with pytest.raises(ConfigError, match="colour"):
        sanic_chat.create_blueprint(colour="blue")


async def test_environment_variables_configure_the_chat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANIC_CHAT_DEFAULT_ROOM", "general")
    monkeypatch.setenv("SANIC_CHAT_PRESENCE_EVENTS", "false")
    app = make_app()
    async with live(app) as srv:
        assert srv.chat.config.presence_events is False
        async with srv.client(welcome=False) as alice:
            await alice.expect("welcome", rooms=["general"])


async def test_url_prefix_moves_the_route() -> None:
    async with live(make_app(url_prefix="/chat")) as srv:
        async with srv.client("/chat/ws") as alice:
            await alice.say("moved")
        with pytest.raises(InvalidStatus) as info:
            async with srv.client("/ws"):
                pass
        assert info.value.response.status_code == 404


async def test_url_prefix_from_app_config() -> None:
    app = new_app()
    app.config.CHAT_URL_PREFIX = "/api"
    app.blueprint(sanic_chat.create_blueprint())
    async with live(app) as srv, srv.client("/api/ws") as alice:
        await alice.say("configured")


def _already_registered(name: str, app: str) -> str:
    return re.escape(
        f"a sanic-chat blueprint named {name!r} is already registered on "
        f"app {app!r}"
    )


def test_one_blueprint_per_name_and_app() -> None:
    # The same blueprint twice: Sanic lets it through, sanic-chat must not
    # (a second chat, and routes, under the same name).
    app = new_app()
    blueprint = sanic_chat.create_blueprint(name="public")
    app.blueprint(blueprint)
    with pytest.raises(
        ConfigError, match=_already_registered("public", app.name)
    ):
        app.blueprint(blueprint)
    assert sanic_chat.get_chat(app, "public") is not None


@pytest.mark.slow  # python -O in a subprocess
def test_one_blueprint_per_name_and_app_without_sanic_asserts() -> None:
    # Two blueprints of one name: Sanic refuses the second with an
    # ``assert``, which ``python -O`` removes; then sanic-chat's own
    # check is all that stands before a second chat under that name.
    code = textwrap.dedent(
        """
        import sanic, sanic_chat
        app = sanic.Sanic("twice")
        app.blueprint(sanic_chat.create_blueprint())
        try:
            app.blueprint(sanic_chat.create_blueprint())
        except sanic_chat.ConfigError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-O", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert re.fullmatch(
        _already_registered("sanic_chat", "twice") + "\n", result.stdout
    ), result.stdout + result.stderr


async def test_two_chats_on_one_app_under_different_names() -> None:
    app = new_app()
    app.blueprint(sanic_chat.create_blueprint(name="public"))
    app.blueprint(
        sanic_chat.create_blueprint(name="staff", url_prefix="/staff")
    )
    async with live(app) as srv:
        public = sanic_chat.get_chat(app, "public")
        staff = sanic_chat.get_chat(app, "staff")
        assert public is not staff
        async with srv.client("/staff/ws") as alice:
            await alice.say("staff only")
        assert await public.history("lobby") == []
        assert len(await staff.history("lobby")) == 1


def test_broadcaster_url_must_be_known() -> None:
    app = new_app()
    with pytest.raises(ConfigError, match="nats"):
        app.blueprint(sanic_chat.create_blueprint(broadcaster="nats://x"))


def test_broadcaster_instance_is_used_as_given() -> None:
    backend = sanic_chat.MemoryBroadcaster(history_size=5)
    app = new_app()
    app.blueprint(sanic_chat.create_blueprint(broadcaster=backend))
    assert sanic_chat.get_chat(app).broadcaster is backend


def test_the_config_repr_shows_no_credentials() -> None:
    config = ChatConfig.resolve(
        {
            "broadcaster_url": "redis://:hunter2@localhost/0",
            "api_key": "s3cret-api",
            "metrics_key": "s3cret-metrics",
        },
        {},
    )
    shown = repr(config)
    assert "default_room='lobby'" in shown
    for secret in ("hunter2", "s3cret-api", "s3cret-metrics"):
        assert secret not in shown


def test_registration_leaves_the_hosts_warning_filters_alone() -> None:
    """sanic-ext 24.12's pydantic warning is silenced only around our call."""
    app = new_app()  # Sanic adds filters of its own here
    before = list(warnings.filters)
    # With the HTTP API and its OpenAPI body description.
    app.blueprint(sanic_chat.create_blueprint())
    assert warnings.filters == before


def registration_error(app: Any, **options: Any) -> str:
    with pytest.raises(ConfigError) as info:
        app.blueprint(sanic_chat.create_blueprint(**options))
    return str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"history_size": -5},
            "history_size=-5: history_size must be at least 1",
        ),
        (
            {"slow_consumer": "bogus"},
            "slow_consumer='bogus': slow_consumer must be 'close' or "
            "'drop_oldest'",
        ),
        (
            {"send_queue_size": "lots"},
            "send_queue_size='lots': send_queue_size must be an integer",
        ),
        (
            {"max_unsent_bytes": 1 << 28},
            "max_unsent_bytes=268435456: max_worker_unsent_bytes "
            "(134217728) must be at least max_unsent_bytes (268435456)",
        ),
    ],
)
def test_a_bad_keyword_is_named_as_written(
    options: dict[str, Any], message: str
) -> None:
    assert registration_error(new_app(), **options) == message


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "CHAT_SLOW_CONSUMER",
            "bogus",
            "CHAT_SLOW_CONSUMER='bogus': slow_consumer must be 'close' or "
            "'drop_oldest'",
        ),
        (
            "CHAT_HISTORY_SIZE",
            0,
            "CHAT_HISTORY_SIZE=0: history_size must be at least 1",
        ),
        (
            "CHAT_PRESENCE_EVENTS",
            "maybe",
            "CHAT_PRESENCE_EVENTS='maybe': presence_events must be true or "
            "false",
        ),
    ],
)
def test_a_bad_config_key_is_named_as_written(
    key: str, value: object, message: str
) -> None:
    app = new_app()
    app.config[key] = value
    assert registration_error(app) == message


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        (
            "SANIC_CHAT_HISTORY_SIZE",
            "-5",
            "SANIC_CHAT_HISTORY_SIZE=-5: history_size must be at least 1",
        ),
        (
            "SANIC_CHAT_SLOW_CONSUMER",
            "bogus",
            "SANIC_CHAT_SLOW_CONSUMER=bogus: slow_consumer must be 'close' "
            "or 'drop_oldest'",
        ),
        (
            "SANIC_CHAT_SEND_QUEUE_SIZE",
            "lots",
            "SANIC_CHAT_SEND_QUEUE_SIZE=lots: send_queue_size must be an "
            "integer",
        ),
        (
            "SANIC_CHAT_SHUTDOWN_SPREAD",
            "-0.5",
            "SANIC_CHAT_SHUTDOWN_SPREAD=-0.5: shutdown_spread must be >= 0",
        ),
        (
            "SANIC_CHAT_PATH",
            "ws",
            "SANIC_CHAT_PATH=ws: path must start with '/'",
        ),
    ],
)
def test_a_bad_environment_variable_is_named_as_written(
    monkeypatch: pytest.MonkeyPatch, variable: str, text: str, message: str
) -> None:
    monkeypatch.setenv(variable, text)
    app = new_app()  # Sanic loads SANIC_* variables here
    assert registration_error(app) == message


def test_a_config_key_set_over_the_environment_is_named_as_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANIC_CHAT_HISTORY_SIZE", "-5")
    app = new_app()
    app.config.CHAT_HISTORY_SIZE = 0  # the app's code wins over the env
    assert registration_error(app) == (
        "CHAT_HISTORY_SIZE=0: history_size must be at least 1"
    )


def test_secrets_are_never_shown_in_errors() -> None:
    assert registration_error(new_app(), api_key=12345) == (
        "api_key=<hidden>: api_key must be a string"
    )


def test_a_numeric_secret_from_the_environment_is_kept_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sanic turns ``007`` into the int 7; the key is the text ``007``."""
    monkeypatch.setenv("SANIC_CHAT_API_KEY", "007")
    monkeypatch.setenv("SANIC_CHAT_DEFAULT_ROOM", "42")
    app = new_app()
    app.blueprint(sanic_chat.create_blueprint())
    config = sanic_chat.get_chat(app).config
    assert (config.api_key, config.default_room) == ("007", "42")
