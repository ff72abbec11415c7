"""The docs stay true: every option is documented where users look."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sanic_chat import ChatConfig

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("doc", ["README.md", "docs/configuration.md"])
def test_every_option_is_documented(doc: str) -> None:
    text = (ROOT / doc).read_text()
    for name in ChatConfig.option_names():
        assert f"CHAT_{name.upper()}" in text, f"{name} missing from {doc}"


def test_the_configuration_reference_names_every_environment_variable() -> (
    None
):
    text = (ROOT / "docs/configuration.md").read_text()
    for name in ChatConfig.option_names():
        assert f"SANIC_CHAT_{name.upper()}" in text, name


def test_protocol_doc_lists_every_error_code_the_server_sends() -> None:
    text = (ROOT / "docs/protocol.md").read_text()
    sources = "".join(
        p.read_text() for p in (ROOT / "sanic_chat").rglob("*.py")
    )
    import re

    codes = set(re.findall(r'ProtocolError\(\s*"([a-z_]+)"', sources))
    codes |= set(re.findall(r'protocol\.error\(\s*"([a-z_]+)"', sources))
    assert codes >= {"bad_request", "too_large", "not_joined"}
    for code in codes:
        assert f"`{code}`" in text, code


def test_readme_starts_with_the_two_quickstart_commands() -> None:
    text = (ROOT / "README.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1]
    assert "python -m example_app" in quickstart
    assert ".venv/bin/pytest" in quickstart


@pytest.mark.slow  # mkdocs in a subprocess
def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link or reference fails."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    # The API reference is generated from the docstrings.
    assert "Create the chat blueprint" in api
    assert "JWTAuthenticator" in api
