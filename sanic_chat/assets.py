"""Files the blueprint serves as they are, with an ETag.

The JavaScript client (``client.js``, ``client.d.ts``) and the AsyncAPI
document are built or read once, when the blueprint is registered, and
answered from memory: a strong ``ETag`` (a hash of the bytes) lets a
client revalidate with ``If-None-Match`` and get a 304, and a route
takes no body (400, unread, like every route of the plugin).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sanic import HTTPResponse, Request

from .api import ApiError, refuse_body

__all__ = ["Asset", "etag_matches"]


@dataclass(frozen=True, slots=True)
class Asset:
    """One answer's bytes, content type, caching and ETag, made once."""

    body: bytes
    content_type: str
    cache_control: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str, cache_control: str) -> Asset:
        """An asset of ``body``; its ETag is a hash of the bytes."""
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, content_type, cache_control, f'"{digest}"')

    async def answer(self, request: Request) -> HTTPResponse:
        """200 with the body (none for HEAD), or 304 if the ETag matches."""
        try:
            await refuse_body(request)
        except ApiError as exc:
            return exc.response()
        headers = {"ETag": self.etag, "Cache-Control": self.cache_control}
        if etag_matches(request.headers.get("if-none-match", ""), self.etag):
            return HTTPResponse(status=304, headers=headers)
        body = b"" if request.method == "HEAD" else self.body
        headers["Content-Length"] = str(len(self.body))
        return HTTPResponse(
            body, headers=headers, content_type=self.content_type
        )


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag``, or is ``*``.

    RFC 9110 compares weakly here: ``W/"x"`` matches ``"x"``.
    """
    tags = (tag.strip() for tag in if_none_match.split(","))
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)
