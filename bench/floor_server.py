"""The floor under sanic-chat: Sanic's pipeline and its upgrade, no chat.

A Sanic app with one route that completes the WebSocket upgrade with
sanic-chat's fast transport (:func:`sanic_chat._sanic.accept`) and then
does nothing: no authentication, session, rooms or frames. It speaks the
``bare`` dialect of ``bench/loadgen.mjs`` for the connection scenarios
(S4, S5): a connection counts once its handshake is done. What
sanic-chat costs per connection beyond this is the chat's own work; what
this costs beyond ``bench/bare_server.py`` is Sanic's (and sanic-ext's,
which Sanic loads when it is installed) request pipeline.

    python bench/floor_server.py PORT
"""

from __future__ import annotations

import sys

from sanic import Request, Sanic

from sanic_chat import _sanic

app = Sanic("floor")
app.enable_websocket()


@app.get("/")
@_sanic.upgrade_handler
async def upgrade(request: Request) -> None:
    """Upgrade, then hold the socket open until the client leaves."""
    socket = await _sanic.accept(request, "fast", None)
    if socket is None or not hasattr(socket, "arrival"):
        return
    while socket.take() is not None:  # ignore what the client sends
        await socket.arrival()


if __name__ == "__main__":
    app.run(
        host="127.0.0.1",
        port=int(sys.argv[1]),
        single_process=True,
        access_log=False,
        motd=False,
    )
