"""Example: a Sanic app with sanic-chat installed and a browser chat page.

Run it with ``python -m example_app`` (``--help`` lists the flags). Every
chat setting can also come from ``SANIC_CHAT_*`` environment variables,
e.g. ``SANIC_CHAT_DEFAULT_ROOM=general``.

Login is a **demo**: ``POST /login`` with a display name returns a
short-lived JWT (and sets it as an HttpOnly cookie) without any password.
In a real app, issue the token after your own authentication (password,
SSO, session) and keep ``JWTAuthenticator`` as it is.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from sanic import Request, Sanic
from sanic.exceptions import BadRequest
from sanic.response import HTTPResponse, file, json

import sanic_chat
from sanic_chat.identity import NAME_RULE, valid_display_name

STATIC = Path(__file__).parent / "static"
# Sanic settings for a chat (docs/deployment.md, "Slow clients"); each
# applies only when SANIC_<KEY> is not set in the environment. Chat
# requests are small and quick: a client silent for 10 s while sending a
# request is gone or hostile, an idle keep-alive connection is not worth
# holding past 5 s (sockets are not affected: Sanic stops its timers on
# an upgrade), and no request needs more than 1 MB of body.
SANIC_SETTINGS: dict[str, int] = {
    "REQUEST_TIMEOUT": 10,
    "KEEP_ALIVE_TIMEOUT": 5,
    "REQUEST_MAX_HEADER_SIZE": 8192,
    "REQUEST_MAX_SIZE": 1_000_000,
}
SECRET_ENV = "SANIC_CHAT_JWT_SECRET"  # noqa: S105 - a variable's name
TOKEN_LIFETIME = 15 * 60  # seconds; the page refreshes before expiry
COOKIE = "chat_token"

logger = logging.getLogger(__name__)


def jwt_secret() -> str:
    """The signing secret: ``SANIC_CHAT_JWT_SECRET``, or a random one.

    A random secret is put in the environment, so that workers started
    after this (``--workers N``) share it; tokens do not survive a restart.
    """
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        secret = secrets.token_urlsafe(32)
        os.environ[SECRET_ENV] = secret
        logger.warning(
            "%s is not set: using a random secret; tokens will not "
            "survive a restart",
            SECRET_ENV,
        )
    return secret


def create_app(
    name: str = "example_app",
    *,
    allow_anonymous: bool = False,
    **chat_options: Any,
) -> Sanic:
    """Build the example app: page at ``/``, login, chat at ``/ws``."""
    secret = jwt_secret()
    app = Sanic(name)
    for key, value in SANIC_SETTINGS.items():
        if f"SANIC_{key}" not in os.environ:  # the environment wins
            app.config[key] = value
    app.blueprint(
        sanic_chat.create_blueprint(
            authenticator=sanic_chat.JWTAuthenticator(secret),
            allow_anonymous=allow_anonymous,
            **chat_options,
        )
    )

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return await file(STATIC / "index.html", mime_type="text/html")

    @app.post("/login")
    async def login(request: Request) -> HTTPResponse:
        try:
            body = request.json
        except BadRequest:
            body = None
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not valid_display_name(name.strip()):
            return json(
                {
                    "error": {
                        "code": "bad_request",
                        "message": NAME_RULE,
                    }
                },
                status=400,
            )
        name = name.strip()
        expires = int(time.time()) + TOKEN_LIFETIME
        user = {"id": "user:" + name.lower(), "name": name}
        token = jwt.encode(
            {"sub": user["id"], "name": name, "exp": expires}, secret
        )
        response = json({"token": token, "user": user, "expires_at": expires})
        response.add_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=request.scheme == "https",
            max_age=TOKEN_LIFETIME,
        )
        return response

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
