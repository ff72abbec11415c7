"""A real TCP proxy in front of Redis, to cut one worker off or make it deaf.

Not a fake Redis: bytes go to a real ``redis-server``; the proxy only
decides whether they get through, as a failing network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time


class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target_port``.

    ``cut()`` drops every connection and refuses new ones until
    ``restore()``. ``deafen()`` keeps connections up but swallows what
    Redis sends on pub/sub connections (those that sent ``SUBSCRIBE``):
    a silently dead subscription. ``hold()`` delays every reply from Redis
    until ``restore()``: commands are applied, their answers are late.
    ``stall`` seconds: block the event loop
    (shared with the app under test) right after forwarding a subscription
    to a room, so that Redis confirms it while the loop is busy, as in a
    connect storm. ``rcvbuf`` bytes: a small receive buffer towards the
    target, so that a ``hold()`` backs the target's writes up soon (the
    kernel would otherwise buffer megabytes).
    """

    def __init__(self, target_port: int, rcvbuf: int = 0) -> None:
        self.target_port = target_port
        self.rcvbuf = rcvbuf
        self.port = 0
        self.cut_off = False
        self.deaf = False
        self.stall = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut_off = False
        self.deaf = False
        self._flowing.set()

    def hold(self) -> None:
        self._flowing.clear()

    def deafen(self) -> None:
        self.deaf = True

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        state = {"pubsub": False}
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, state, True)),
            asyncio.create_task(self._pipe(up_reader, writer, state, False)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _connect(
        self,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.rcvbuf:
            return await asyncio.open_connection("127.0.0.1", self.target_port)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(
                sock, ("127.0.0.1", self.target_port)
            )
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        state: dict[str, bool],
        upstream: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if upstream and b"SUBSCRIBE" in data.upper():
                    state["pubsub"] = True
                if not upstream and self.deaf and state["pubsub"]:
                    continue
                if not upstream:
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
                if upstream and self.stall and b":room:" in data:
                    time.sleep(self.stall)  # noqa: ASYNC251 - a busy loop
