"""Example: a Sanic app with sanic-chat installed and a browser chat page.

Run it with ``python -m example_app`` (``--help`` lists the flags). Every
chat setting can also come from ``SANIC_CHAT_*`` environment variables,
e.g. ``SANIC_CHAT_DEFAULT_ROOM=general``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, file, json

import sanic_chat

STATIC = Path(__file__).parent / "static"


def create_app(name: str = "example_app", **chat_options: Any) -> Sanic:
    """Build the example app: the chat at ``/ws``, its page at ``/``."""
    app = Sanic(name)
    app.blueprint(sanic_chat.create_blueprint(**chat_options))

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return await file(STATIC / "index.html", mime_type="text/html")

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        chat = sanic_chat.get_chat(request.app)
        healthy = chat.healthy
        return json(
            {
                "status": "ok" if healthy else "unavailable",
                "broadcaster": "ok" if chat.broadcaster.healthy else "down",
                "connections": chat.connection_count,
                "rooms": len(chat.room_sizes()),
            },
            status=200 if healthy else 503,
        )

    return app
