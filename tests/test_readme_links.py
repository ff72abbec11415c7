"""README.md renders on PyPI, where a relative link or image is broken.

PyPI shows the README out of the repository, so every link and image in
it is absolute (the GitHub page of a doc, the raw URL of an image) or an
anchor in the page; and each one into this repository names a file that
exists, so it cannot rot.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
BLOB = "https://github.com/sanic-chat/sanic-chat/blob/main/"
RAW = "https://raw.githubusercontent.com/sanic-chat/sanic-chat/main/"
INLINE = re.compile(r"(!?)\[[^\]]*\]\(\s*<?([^)\s>]+)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)""", re.I)


def targets(text: str) -> list[tuple[bool, str]]:
    """``(is_image, target)`` of every link and image in ``text``."""
    found = [(bang == "!", url) for bang, url in INLINE.findall(text)]
    found += [(False, url) for url in REFERENCE.findall(text)]
    found += [(True, url) for url in HTML.findall(text)]
    return found


def relative(text: str) -> list[str]:
    """The targets of ``text`` that are neither absolute nor anchors."""
    return [
        url
        for _, url in targets(text)
        if not re.match(r"(https?|mailto):|#", url)
    ]


def test_the_checker_finds_relative_links_and_images() -> None:
    sample = (
        "[a](docs/a.md) ![b](docs/b.png) [c](#c) [d](https://x.org/)\n"
        '[e]: docs/e.md\n<img src="f.png"> <a href="https://x.org/g">g</a>'
    )
    assert relative(sample) == [
        "docs/a.md",
        "docs/b.png",
        "docs/e.md",
        "f.png",
    ]


def test_every_link_and_image_of_the_readme_is_absolute() -> None:
    text = (ROOT / "README.md").read_text()
    assert targets(text), "no links found: the checker is broken"
    assert relative(text) == []


def test_every_link_into_the_repository_names_a_file_that_exists() -> None:
    for is_image, url in targets((ROOT / "README.md").read_text()):
        for base in (BLOB, RAW):
            if url.startswith(base):
                path = url.removeprefix(base).split("#")[0]
                assert (ROOT / path).is_file(), url
                # An image through blob/ shows GitHub's page, not the image.
                assert not is_image or base == RAW, url
