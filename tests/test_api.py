"""The public API: one door, typed, versioned."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import sanic_chat


def _isort_key(name: str) -> tuple[int, str]:
    # Constants, then classes, then functions: ruff's RUF022 order.
    if name.isupper():
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_complete() -> None:
    assert sanic_chat.__all__ == sorted(sanic_chat.__all__, key=_isort_key)
    for name in sanic_chat.__all__:
        assert hasattr(sanic_chat, name), name
    public = {n for n in dir(sanic_chat) if not n.startswith("_")}
    modules = {
        "auth", "authenticators", "backends", "blueprint", "chat", "config", "connection",
        "endpoint", "errors", "hub", "identity", "limits", "protocol", "testing", "transport", "wire", "api", "routes", "metrics",
        "redaction", "budget", "admission", "backoff", "session", "outbox", "wakeup",
        "archive", "revisions", "hooks", "lifecycle", "posting", "client",
        "frames", "asyncapi", "assets", "jsclient", "jwt_hmac", "query",
    }  # fmt: skip
    assert public - modules == set(sanic_chat.__all__) - {"__version__"}


def test_version_matches_the_installed_metadata() -> None:
    assert sanic_chat.__version__ == importlib.metadata.version("sanic-chat")


def test_package_is_typed() -> None:
    assert (Path(sanic_chat.__file__).parent / "py.typed").exists()


def test_changelog_mentions_the_current_version() -> None:
    changelog = Path(__file__).parent.parent / "CHANGELOG.md"
    assert f"## [{sanic_chat.__version__}]" in changelog.read_text()
