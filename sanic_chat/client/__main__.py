"""``python -m sanic_chat.client URL --room R``: a terminal chat.

Lines typed are sent to the first room; messages of every room are
printed as they come. ``--send TEXT`` sends once and exits: 0 with the
message id on stdout, non-zero with the reason on stderr. The token may
come from ``--token`` or, out of the process list, ``SANIC_CHAT_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Sequence

from . import connect
from .connection import ChatClient
from .errors import ChatClientError
from .events import Error, Event, Joined, Left, Message, StateChange

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sanic_chat.client",
        description="Chat in a terminal, or send one message and exit.",
    )
    parser.add_argument("url", help="the chat endpoint, ws://HOST:PORT/ws")
    parser.add_argument(
        "--room", action="append", default=[], help="room to join (repeat)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SANIC_CHAT_TOKEN"),
        help="access token (default: $SANIC_CHAT_TOKEN)",
    )
    parser.add_argument("--name", help="display name, for a guest")
    parser.add_argument("--send", metavar="TEXT", help="send TEXT and exit")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds (default 10)"
    )
    return parser


def _line(event: Event) -> str | None:
    """How an event reads in the terminal, or None to print nothing."""
    if isinstance(event, Message):
        name = event.user.get("name", "?")
        return f"[{event.room}] {name}: {event.text}"
    if isinstance(event, Joined | Left) and not event.mine:
        verb = "joined" if isinstance(event, Joined) else "left"
        return f"[{event.room}] * {event.user.get('name', '?')} {verb}"
    if isinstance(event, StateChange) and event.state != "connected":
        return f"* {event.state} {event.reason}".rstrip()
    if isinstance(event, Error):
        return f"* error {event.code}: {event.message}"
    return None


def _connect(args: argparse.Namespace) -> ChatClient:
    """The client the command line asks for (not yet connected)."""
    return connect(
        args.url,
        token=args.token,
        rooms=args.room,
        name=args.name,
        send_timeout=args.timeout,
        open_timeout=args.timeout,
    )


async def _send_once(args: argparse.Namespace) -> int:
    async with _connect(args) as chat:
        room = args.room[0] if args.room else next(iter(chat.log.last))
        print(await chat.send(room, args.send))
    return 0


def _read_stdin(
    loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
) -> None:
    """Feed stdin's lines to ``lines`` (None at the end), from a thread.

    A daemon thread, not ``to_thread``: a pending ``readline`` must not
    keep the process alive once the chat has ended.
    """
    with contextlib.suppress(RuntimeError):  # the loop has ended
        for line in sys.stdin:
            asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
        asyncio.run_coroutine_threadsafe(lines.put(None), loop).result()


async def _interactive(args: argparse.Namespace) -> int:
    async with _connect(args) as chat:
        room = args.room[0] if args.room else next(iter(chat.log.last))

        async def show() -> None:
            async for event in chat:
                line = _line(event)
                if line is not None:
                    print(line, flush=True)

        lines: asyncio.Queue[str | None] = asyncio.Queue(16)
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=_read_stdin, args=(loop, lines), daemon=True
        ).start()
        printer = asyncio.create_task(show())
        try:
            while True:
                typed = asyncio.ensure_future(lines.get())
                await asyncio.wait(
                    (typed, printer), return_when=asyncio.FIRST_COMPLETED
                )
                if printer.done():  # the chat ended: unauthorized, refused
                    typed.cancel()
                    printer.result()
                    return 0
                line = typed.result()
                if line is None:
                    return 0
                if line.strip():
                    try:
                        await chat.send(room, line.rstrip("\n"))
                    except ChatClientError as exc:
                        print(f"* not sent ({exc.code}): {exc}", flush=True)
        finally:
            printer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await printer


def main(argv: Sequence[str] | None = None) -> int:
    """Run the terminal client; return the exit status."""
    args = _parser().parse_args(argv)
    run = _send_once if args.send is not None else _interactive
    try:
        return asyncio.run(run(args))
    except ChatClientError as exc:
        print(f"sanic-chat: {exc.code}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
