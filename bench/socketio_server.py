"""python-socketio, as its users would run it, for comparison.

An ``AsyncServer`` on aiohttp with uvloop. A client emits ``join`` with a
room (answered with ``joined``) and ``say`` with a room and a text, which
the server emits as ``msg`` to everyone in that room. With ``--redis URL``
it uses ``AsyncRedisManager``, so several processes share rooms.

    python bench/socketio_server.py PORT [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse

import socketio
import uvloop
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    manager = socketio.AsyncRedisManager(args.redis) if args.redis else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp", client_manager=manager, transports=["websocket"]
    )

    @sio.on("join")  # type: ignore[misc]
    async def join(sid: str, room: str) -> None:
        await sio.enter_room(sid, room)
        await sio.emit("joined", room, to=sid)

    @sio.on("say")  # type: ignore[misc]
    async def say(sid: str, room: str, text: str) -> None:
        await sio.emit("msg", text, room=room)

    app = web.Application()
    sio.attach(app)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
