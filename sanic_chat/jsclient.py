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

from pathlib import Path

from sanic import Blueprint, HTTPResponse, Request

from ._openapi import describe
from .assets import Asset

__all__ = ["STATIC", "add_client_routes"]

STATIC = Path(__file__).parent / "static"
CACHE_CONTROL = "public, max-age=3600"


def types_path(path: str) -> str:
    """Where the declarations are served: ``.js`` replaced by ``.d.ts``."""
    stem = path[:-3] if path.endswith(".js") else path
    return stem + ".d.ts"


def add_client_routes(bp: Blueprint, path: str) -> None:
    """Serve ``client.js`` at ``path`` and ``client.d.ts`` beside it."""
    assets = {
        path: Asset.of(
            (STATIC / "client.js").read_bytes(),
            "text/javascript; charset=utf-8",
            CACHE_CONTROL,
        ),
        types_path(path): Asset.of(
            (STATIC / "client.d.ts").read_bytes(),
            "application/typescript; charset=utf-8",
            CACHE_CONTROL,
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
            return await asset.answer(request)

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
