"""Typed options: ``ChatOptions``, a whole ``ChatConfig``, list settings."""

from __future__ import annotations

import logging
import textwrap
import typing
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import sanic_chat
from sanic_chat import ChatConfig, ChatOptions, ConfigError, get_chat

from .conftest import TIMEOUT, live, make_app, new_app


def test_chat_options_list_every_setting() -> None:
    assert set(ChatOptions.__annotations__) == set(ChatConfig.option_names())
    assert ChatOptions.__total__ is False


def test_chat_options_types_match_the_settings() -> None:
    options = typing.get_type_hints(ChatOptions)
    settings = typing.get_type_hints(ChatConfig)
    for name, kind in options.items():
        if name == "allowed_origins":
            continue  # a list or a string in, a tuple kept
        assert kind == settings[name], name


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (["https://a.example", " https://b.example "], ("https://a.example", "https://b.example")),
        (("https://a.example",), ("https://a.example",)),
        ("https://a.example, https://b.example,", ("https://a.example", "https://b.example")),
        ("*", ("*",)),
        ("", ()),
        ([], ()),
    ],
)  # fmt: skip
def test_allowed_origins_take_a_list_or_a_comma_string(
    given: object, kept: tuple[str, ...]
) -> None:
    by_keyword = ChatConfig.resolve({"allowed_origins": given}, {})
    assert by_keyword.allowed_origins == kept
    if isinstance(given, str):
        by_config = ChatConfig.resolve({}, {"CHAT_ALLOWED_ORIGINS": given})
        assert by_config.allowed_origins == kept


@pytest.mark.parametrize(
    "bad", [5, [1], ["https://a.example,https://b.example"], b"x"]
)
def test_a_bad_origin_list_is_named_as_written(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        ChatConfig.resolve({"allowed_origins": bad}, {})
    assert str(info.value).startswith(f"allowed_origins={bad!r}: ")
    assert "list of strings" in str(info.value)


def test_an_origin_list_from_the_environment_is_the_text_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sanic makes "12" the int 12; a list of origins is text.
    monkeypatch.setenv("SANIC_CHAT_ALLOWED_ORIGINS", "12")
    config = ChatConfig.resolve({}, {"CHAT_ALLOWED_ORIGINS": 12})
    assert config.allowed_origins == ("12",)


def test_a_whole_config_is_validated_at_once() -> None:
    with pytest.raises(ConfigError, match="history_size=-5: history_size"):
        sanic_chat.create_blueprint(ChatConfig(history_size=-5))
    with pytest.raises(ConfigError, match=r"^default_room='no spaces': "):
        sanic_chat.create_blueprint(ChatConfig(), default_room="no spaces")
    with pytest.raises(ConfigError, match="takes a ChatConfig"):
        sanic_chat.create_blueprint({"history_size": 5})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="colour"):
        sanic_chat.create_blueprint(ChatConfig(), colour="blue")  # type: ignore[call-arg]


def test_a_whole_config_wins_over_app_config_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = new_app()
    app.config.CHAT_DEFAULT_ROOM = "from-app-config"
    app.config.CHAT_HISTORY_SIZE = 3
    config = ChatConfig(default_room="general", allowed_origins=("*",))
    caplog.set_level(logging.WARNING, logger="sanic_chat.blueprint")
    app.blueprint(sanic_chat.create_blueprint(config, history_size=7))
    used = get_chat(app).config
    assert (used.default_room, used.history_size) == ("general", 7)
    assert used.allowed_origins == ("*",)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "sanic_chat.blueprint"
    ]
    assert len(warnings) == 1, warnings
    assert "CHAT_DEFAULT_ROOM, CHAT_HISTORY_SIZE" in warnings[0]


async def _status(url: str, origin: str) -> int:
    try:
        async with connect(
            url,
            origin=origin,
            open_timeout=TIMEOUT,  # type: ignore[arg-type]
        ) as ws:
            await ws.recv()  # the welcome
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_a_list_of_origins_as_a_keyword_is_enforced() -> None:
    app = make_app(allowed_origins=["https://a.example", "https://b.example/"])
    async with live(app) as srv:
        assert srv.chat.config.allowed_origins == (
            "https://a.example",
            "https://b.example/",
        )
        assert await _status(srv.url(), "https://a.example") == 101
        assert await _status(srv.url(), "https://b.example") == 101
        assert await _status(srv.url(), "https://evil.example") == 403
        own = f"http://127.0.0.1:{srv.port}"
        assert await _status(srv.url(), own) == 403  # a list replaces it


async def test_a_comma_string_in_app_config_is_enforced() -> None:
    app = new_app()
    app.config.CHAT_ALLOWED_ORIGINS = "https://a.example, https://b.example"
    app.blueprint(sanic_chat.create_blueprint())
    async with live(app) as srv:
        assert await _status(srv.url(), "https://b.example") == 101
        assert await _status(srv.url(), "https://c.example") == 403


GOOD_CALLS = """
    from sanic_chat import ChatConfig, create_blueprint

    create_blueprint(default_room="general", history_size=500)
    create_blueprint(allowed_origins=["https://a.example"])
    create_blueprint(allowed_origins="https://a.example,https://b.example")
    create_blueprint(ChatConfig(history_size=5), url_prefix="/chat")
    create_blueprint(broadcaster="memory://", slow_consumer="drop_oldest")
    create_blueprint(name="second", rate_limit=2, transport="portable")
"""

BAD_CALLS = """
    from sanic_chat import ChatConfig, create_blueprint

    create_blueprint(defualt_room="general")
    create_blueprint(history_size="100")
    create_blueprint(slow_consumer="ignore")
    create_blueprint(allowed_origins=[1])
    create_blueprint(ChatConfig(), ChatConfig())
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What ``mypy`` says of the calls above, in one run (about 20 s)."""
    api = pytest.importorskip("mypy.api")
    root = Path(sanic_chat.__file__).resolve().parent.parent
    tmp = tmp_path_factory.mktemp("mypy")
    (tmp / "good.py").write_text(textwrap.dedent(GOOD_CALLS))
    (tmp / "bad.py").write_text(textwrap.dedent(BAD_CALLS))
    (tmp / "mypy.ini").write_text(
        "[mypy]\npython_version = 3.11\nfollow_imports = silent\n"
        f"mypy_path = {root}\n"
    )
    out, err, _ = api.run(
        [
            str(tmp / "good.py"),
            str(tmp / "bad.py"),
            "--config-file",
            str(tmp / "mypy.ini"),
            "--cache-dir",
            str(tmp / "cache"),
            "--strict",
            "--show-error-codes",
            "--no-error-summary",
        ]
    )
    assert not err, err
    return str(out)


@pytest.mark.slow  # a cold mypy run over the package and Sanic
def test_mypy_accepts_the_documented_calls(mypy_output: str) -> None:
    assert "good.py" not in mypy_output, mypy_output


@pytest.mark.slow
def test_mypy_catches_a_wrong_option_at_the_call_site(
    mypy_output: str,
) -> None:
    errors = [
        line.split(":", 2)[1:]
        for line in mypy_output.splitlines()
        if "bad.py" in line and ": error:" in line
    ]
    by_line = {int(n): text for n, text in errors}
    assert 'Unexpected keyword argument "defualt_room"' in by_line[4]
    assert '"history_size"' in by_line[5] and 'expected "int"' in by_line[5]
    assert '"slow_consumer"' in by_line[6]
    assert "incompatible type" in by_line[7]
    assert "create_blueprint" in by_line[8]  # one positional only
    assert len(by_line) == 5, mypy_output
