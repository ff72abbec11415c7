"""Example: a Sanic app with sanic-chat installed and a browser chat page.

Run it with ``python -m example_app`` (``--help`` lists the flags). Every
chat setting can also come from ``SANIC_CHAT_*`` environment variables,
e.g. ``SANIC_CHAT_DEFAULT_ROOM=general``.

Login is a **demo**: ``POST /login`` with a display name returns a
short-lived JWT (and sets it as an HttpOnly cookie) without any password.
``GET /session`` trades a still valid cookie for a fresh token (the page
cannot read an HttpOnly cookie: this is how a reload stays signed in and
how the page renews its token before expiry), ``POST /logout`` clears the
cookie (both POSTs take only ``Content-Type: application/json``, which
no cross-site form can send); tokens already issued stay valid until
they expire (there is no revocation list), and a session lasts as long
as it is renewed in time, at most ``SESSION_LIFETIME`` after sign-in.
In a real app, issue the token after your own authentication (password,
SSO, session) and keep ``JWTAuthenticator`` as it is.
"""

from __future__ import annotations

import gc
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
# What the page loads besides index.html (its script and style).
PAGE_ASSETS = {
    "app.js": "text/javascript",
    "app.css": "text/css",
}
SECRET_ENV = "SANIC_CHAT_JWT_SECRET"  # noqa: S105 - a variable's name
TOKEN_LIFETIME = 15 * 60  # seconds; the page refreshes before expiry
# A session (renewals included) ends this long after its sign-in: a
# token taken from a cookie cannot be renewed for ever. Carried from
# token to token as ``auth_time`` (the sign-in's time, OIDC's claim).
SESSION_LIFETIME = 12 * 3600
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


async def freeze_startup_objects(app: Sanic) -> None:
    """Move what start-up created out of the cyclic GC's full collections.

    Tens of thousands of long-lived objects (modules, routes, Sanic's and
    the chat's start-up state) would otherwise be scanned again by every
    full collection, and a worker setting up thousands of connections
    runs several. ``gc.freeze()`` after start-up, as the Python docs
    advise for long-running servers, makes that work proportional to the
    connections alone (docs/deployment.md, "Garbage collector"). A
    process-wide choice, so it is the app's to make, not the plugin's.

    It also makes full collections rarer (:data:`GC_THRESHOLD`): each
    one still scans every connection, and a server setting up thousands
    of them ran one or two per 2,000 connections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


GC_THRESHOLD = (700, 10, 100)
"""The example's collector thresholds: Python's defaults (700, 10, 10),
but a full collection waits for 100 collections of the middle generation
instead of 10 (and, as always, for a quarter more objects there than the
last one left)."""


def create_app(
    name: str = "example_app",
    *,
    allow_anonymous: bool = False,
    freeze_gc: bool = False,
    **chat_options: Any,
) -> Sanic:
    """Build the example app: page at ``/``, login, chat at ``/ws``.

    Routes besides the blueprint's: ``/`` and ``/static/<asset>`` (the
    page), ``POST /login``, ``GET /session``, ``POST /logout`` (the demo
    login) and ``/health``. With ``freeze_gc`` (what ``python -m
    example_app`` does) each worker freezes what start-up created out of
    the garbage collector's way (:func:`freeze_startup_objects`).
    """
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

    if freeze_gc:
        app.after_server_start(freeze_startup_objects)

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return await file(STATIC / "index.html", mime_type="text/html")

    @app.get("/static/<asset:str>")
    async def page_asset(request: Request, asset: str) -> HTTPResponse:
        # The page's own files only; the client is the blueprint's
        # /client.js.
        if asset not in PAGE_ASSETS:
            return json(
                {"error": {"code": "not_found", "message": "no such file"}},
                status=404,
            )
        return await file(STATIC / asset, mime_type=PAGE_ASSETS[asset])

    @app.post("/login")
    async def login(request: Request) -> HTTPResponse:
        if (refused := _not_json(request)) is not None:
            return refused
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
        return _signed_in(request, name.strip(), int(time.time()), secret)

    @app.get("/session")
    async def session(request: Request) -> HTTPResponse:
        signed_in = _cookie_session(request, secret)
        if signed_in is None:
            return json(
                {
                    "error": {
                        "code": "unauthorized",
                        "message": "not signed in, or the session expired",
                    }
                },
                status=401,
                headers={"Cache-Control": "no-store"},
            )
        return _signed_in(request, *signed_in, secret)

    @app.post("/logout")
    async def logout(request: Request) -> HTTPResponse:
        if (refused := _not_json(request)) is not None:
            return refused
        response = json({"signed_out": True})
        response.delete_cookie(COOKIE)
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


def _not_json(request: Request) -> HTTPResponse | None:
    """A 415 unless the request says its body is JSON; else None.

    Against cross-site requests (login CSRF): a form on another site
    can POST ``text/plain`` that reads as JSON, and the browser keeps the
    cookie its answer sets (SameSite limits sending, not setting), but no
    form can send ``application/json``, and a cross-site ``fetch`` with it
    needs a CORS preflight this app never grants.
    """
    media = request.headers.get("content-type", "").split(";")[0]
    if media.strip().lower() == "application/json":
        return None
    return json(
        {
            "error": {
                "code": "unsupported_media_type",
                "message": "send the body as JSON "
                "(Content-Type: application/json)",
            }
        },
        status=415,
    )


def _signed_in(
    request: Request, name: str, auth_time: int, secret: str
) -> HTTPResponse:
    """A fresh token for ``name``: in the body and as the HttpOnly cookie.

    It expires in ``TOKEN_LIFETIME``, and never after the session does.
    """
    expires = min(
        int(time.time()) + TOKEN_LIFETIME, auth_time + SESSION_LIFETIME
    )
    user = {"id": "user:" + name.lower(), "name": name}
    claims = {"sub": user["id"], "name": name, "exp": expires}
    token = jwt.encode({**claims, "auth_time": auth_time}, secret)
    response = json(
        {"token": token, "user": user, "expires_at": expires},
        headers={"Cache-Control": "no-store"},
    )
    response.add_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
        max_age=max(0, expires - int(time.time())),
    )
    return response


def _cookie_session(request: Request, secret: str) -> tuple[str, int] | None:
    """The name and sign-in time of a valid cookie token, else None.

    None too when the session is over (``SESSION_LIFETIME`` after its
    sign-in) or the token says no sign-in time.
    """
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp"]}
        )
    except jwt.InvalidTokenError:
        return None
    name = claims.get("name")
    if not isinstance(name, str) or not valid_display_name(name):
        return None
    if claims.get("sub") != "user:" + name.lower():
        return None
    auth_time = claims.get("auth_time")
    if isinstance(auth_time, bool) or not isinstance(auth_time, int):
        return None
    if not time.time() - SESSION_LIFETIME < auth_time <= time.time() + 60:
        return None
    return name, auth_time
