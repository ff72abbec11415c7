"""The example app for ASGI servers: ``uvicorn example_app.asgi:app``.

Settings come from the environment, as with ``python -m example_app``:
``SANIC_CHAT_*`` chat settings, ``SANIC_CHAT_JWT_SECRET`` (set it: with
several ``--workers`` a random secret would differ per worker), and
``SANIC_CHAT_ALLOW_ANONYMOUS=true`` for guests (``--allow-anonymous``).
The chat runs on its portable transport there (docs/deployment.md, "ASGI
servers").
"""

from __future__ import annotations

import os

from . import create_app

app = create_app(
    allow_anonymous=os.environ.get("SANIC_CHAT_ALLOW_ANONYMOUS", "").lower()
    in ("1", "true", "yes", "on")
)
