"""Serving the JavaScript client (``client.js``, ``client.d.ts``).

The files ship inside the package (``sanic_chat/static``) and are read
once, when the blueprint is registered; a page then imports the client
from the chat server itself, in the version that matches the server.
Answers carry a strong ``ETag`` (a hash of the content) and
``Cache-Control: public, max-age=3600``: an hour without a request, then
a cheap revalidation (304). Not ``immutable``: the URL has no version in
it, so an upgraded server must be picked up within the hour.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sanic import Blueprint, HTTPResponse, Request

from ._openapi import describe

__all__ = ["STATIC", "add_client_routes"]

STATIC = Path(__file__).parent / "static"
CACHE_CONTROL = "public, max-age=3600"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes, content type and ETag, read once."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def read(cls, path: Path, content_type: str) -> Asset:
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, content_type, f'"{digest}"')

    def answer(self, request: Request) -> HTTPResponse:
        """200 with the body (none for HEAD), or 304 if the ETag matches."""
        headers = {"ETag": self.etag, "Cache-Control": CACHE_CONTROL}
        if _matches(request.headers.get("if-none-match", ""), self.etag):
            return HTTPResponse(status=304, headers=headers)
        body = b"" if request.method == "HEAD" else self.body
        headers["Content-Length"] = str(len(self.body))
        return HTTPResponse(
            body, headers=headers, content_type=self.content_type
        )


def _matches(header: str, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or is ``*``)."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def types_path(path: str) -> str:
    """Where the declarations are served: ``.js`` replaced by ``.d.ts``."""
    stem = path[:-3] if path.endswith(".js") else path
    return stem + ".d.ts"


def add_client_routes(bp: Blueprint, path: str) -> None:
    """Serve ``client.js`` at ``path`` and ``client.d.ts`` beside it."""
    assets = {
        path: Asset.read(
            STATIC / "client.js", "text/javascript; charset=utf-8"
        ),
        types_path(path): Asset.read(
            STATIC / "client.d.ts", "application/typescript; charset=utf-8"
        ),
    }
    summaries = (
        ("client_js", "The JavaScript client (an ES module)"),
        ("client_dts", "TypeScript declarations of the JavaScript client"),
    )
    for (route_name, summary), (route, asset) in zip(
        summaries, assets.items(), strict=True
    ):

        async def serve(
            request: Request, asset: Asset = asset
        ) -> HTTPResponse:
            return asset.answer(request)

        bp.route(
            route, methods=["GET", "HEAD"], name=route_name, ignore_body=True
        )(
            describe(
                serve,
                summary=summary,
                description="docs/clients.md; cached for an hour, "
                "revalidated with its ETag.",
            )
        )
