"""Command line of the example app: ``python -m example_app --help``."""

from __future__ import annotations

import argparse
from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader

from . import create_app, jwt_secret


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m example_app",
        description="Serve the sanic-chat example: a chat page at / and "
        "the chat at /ws. Chat settings can also be given as SANIC_CHAT_* "
        "environment variables (e.g. SANIC_CHAT_DEFAULT_ROOM=general); "
        "SANIC_CHAT_JWT_SECRET signs the demo login's tokens.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to bind (8000)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (1); the default in-memory broadcaster "
        "does not share rooms between workers",
    )
    parser.add_argument(
        "--default-room",
        default=None,
        help="room every connection joins (CHAT_DEFAULT_ROOM, lobby)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request"
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="let clients without a token in as guests (demos, load tests, "
        "the browser-console client)",
    )
    args = parser.parse_args(argv)
    options: dict[str, object] = {
        "allow_anonymous": args.allow_anonymous,
        "freeze_gc": True,
    }
    if args.default_room:
        options["default_room"] = args.default_room
    jwt_secret()  # decided once here, inherited by every worker
    loader = AppLoader(factory=partial(create_app, **options))
    app = loader.load()
    single = args.workers == 1
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        single_process=single,
        motd=False,
    )
    # Once, from the main process: workers do not run main().
    print(f"sanic-chat example: open {page_url(args.host, args.port)}",
          flush=True)  # fmt: skip
    if single:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)


def page_url(host: str, port: int) -> str:
    """The URL to open for a server bound to ``host``: a browsable one.

    A wildcard address is reachable as the loopback one; an IPv6
    address goes in brackets.
    """
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


if __name__ == "__main__":
    main()
