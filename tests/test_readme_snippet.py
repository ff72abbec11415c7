"""The README's browser-console snippet works where the README says.

The README tells a newcomer to run ``python -m example_app
--allow-anonymous``, open http://127.0.0.1:8000/ and paste its snippet
into that page's console. This runs the snippet taken from README.md
itself, unchanged, on that page in real headless Chromium: a socket to
another host (``localhost`` from ``127.0.0.1``) would be refused as a
foreign origin, so no welcome would come.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .test_browser import (
    CHROMIUM,
    Browser,
    ChatPage,
    ExampleServer,
    browser,  # noqa: F401 - the fixture, shared with the page tests
)
from .test_docs_samples import samples

pytestmark = [
    pytest.mark.slow,  # Chromium and the example app in a subprocess
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Chromium (apt chromium)"
    ),
    pytest.mark.timeout(120),
]


def readme_snippets() -> list[str]:
    """The README's JavaScript samples, in order."""
    return [
        code for where, code in samples("javascript")
        if where.startswith("README.md")
    ]  # fmt: skip


async def test_the_readme_snippet_gets_a_welcome_on_the_page_it_names(
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    opening, *rest = readme_snippets()
    assert "new WebSocket" in opening
    srv = ExampleServer(tmp_path / "example.log", "--allow-anonymous")
    srv.start()
    try:
        page = await ChatPage.open(browser, srv.url)
        assert page.page.url.startswith("http://127.0.0.1:")
        # Pasted at once, as it stands in the README.
        await page.page.add_script_tag(content=opening)
        await _logged(page, '"type":"welcome"')
        for code in rest:  # the lines that follow, once the socket is open
            await page.page.wait_for_function("ws.readyState === 1")
            await page.page.add_script_tag(content=code)
        await _logged(page, "Hello from JS!")
        assert page.errors == []
    finally:
        srv.stop()


async def _logged(page: ChatPage, needle: str) -> None:
    """Wait until the page's console has shown ``needle``."""
    async with asyncio.timeout(10):
        while not any(needle in line for line in page.logs):
            await asyncio.sleep(0.05)
