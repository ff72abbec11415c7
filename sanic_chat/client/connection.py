"""The client's I/O: one socket at a time, reconnected until closed.

:class:`ChatClient` owns a task that connects, reads frames into its
:class:`~sanic_chat.client.state.RoomLog` and reconnects with
:class:`~sanic_chat.backoff.Backoff` when the socket drops. Sends wait in
``pending`` under a stable ``ref`` until acknowledged: each reconnect
sends them again, with the same ``ref``, so a server with idempotent
publish answers a resend whose first ack was lost with the original id
instead of publishing it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
)
from websockets.typing import Subprotocol

from ..backoff import Backoff
from .errors import (
    ChatClientError,
    ClientClosed,
    ConnectFailed,
    Refused,
    SendTimeout,
    Unauthorized,
)
from .events import Delivery, Error, Event, Joined, StateChange
from .sends import PendingSends
from .state import RoomLog

__all__ = ["ChatClient"]

logger = logging.getLogger(__name__)

SUBPROTOCOL = "sanic-chat"  # as sanic_chat.authenticators.SUBPROTOCOL
POLICY_VIOLATION = 1008


class ChatClient:
    """A chat connection that survives network failures.

    Use :func:`sanic_chat.client.connect`; the arguments are its.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        rooms: Sequence[str] = (),
        name: str | None = None,
        send_timeout: float = 10.0,
        open_timeout: float = 10.0,
        max_events: int = 10_000,
        max_pending: int = 1_000,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.name = name
        self.send_timeout = send_timeout
        self.open_timeout = open_timeout
        self.log = RoomLog(list(rooms))
        self._backoff = backoff or Backoff()
        self._events = Delivery(max_events)
        self._pending = PendingSends(max_pending)
        self._ws: ClientConnection | None = None
        self._up = asyncio.Event()
        self._closing = asyncio.Event()
        self._failure: ChatClientError | None = None
        self._task: asyncio.Task[None] | None = None
        self._finished = False
        self._joining: set[str | None] = set()
        self._welcome: dict[str, Any] = {}

    @property
    def connected(self) -> bool:
        """Whether a socket is up, with every room joined, right now."""
        return self._up.is_set()

    @property
    def dropped(self) -> int:
        """Events dropped because the application did not read them."""
        return self._events.dropped

    @property
    def user(self) -> dict[str, str] | None:
        """Who the server says this client is (``{"id", "name"}``)."""
        return self.log.me

    async def __aenter__(self) -> ChatClient:
        self._task = asyncio.create_task(self._run(), name="chat-client")
        up = asyncio.ensure_future(self._up.wait())
        try:
            await asyncio.wait(
                (up, self._task),
                timeout=self.open_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            up.cancel()
        if not self._up.is_set():
            failure = self._failure or ConnectFailed(
                f"could not connect to {self.url} in {self.open_timeout} s"
            )
            await self.close()
            raise failure
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> ChatClient:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.get()
        if event is None:
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        return event

    async def send(
        self,
        room: str,
        text: str,
        *,
        meta: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline per send,
    ) -> str:
        """Publish ``text`` to ``room``; return the message's id.

        While disconnected, waits for the reconnect; a message whose ack
        was lost is sent again with the same ``ref``, never published
        twice (the server answers with the original id).

        Args:
            room: A room the client is in.
            text: The message.
            meta: Passed through to every member (a JSON object).
            timeout: Seconds before giving up (``send_timeout``).

        Raises:
            Refused: The server answered with an ``error`` frame (a
                subclass per code: ``Forbidden``, ``NotJoined``...).
            SendTimeout: No ack in time: the message may or may not
                have been published.
            Unauthorized: The credentials were refused meanwhile.
            ClientClosed: The client was closed first.
        """
        frame: dict[str, Any] = {"type": "message", "room": room,
                                 "text": text}  # fmt: skip
        if meta is not None:
            frame["meta"] = meta
        return await self._request(frame, timeout)

    async def send_to(
        self,
        user_id: str,
        text: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline per send
    ) -> str:
        """Send a direct message to ``user_id``; return its inbox id.

        Raises as :meth:`send`.
        """
        frame = {"type": "message", "to": user_id, "text": text}
        return await self._request(frame, timeout)

    async def join(self, room: str) -> None:
        """Join ``room`` now and on every reconnect.

        The server answers with a :class:`~sanic_chat.client.Joined`.
        """
        await self._write(self.log.join_frame(room))

    async def leave(self, room: str) -> None:
        """Leave ``room``; it is no longer joined on reconnects."""
        self.log.forget(room)
        await self._write({"type": "leave", "room": room})

    async def close(self) -> None:
        """Close the socket and stop reconnecting.

        Pending sends fail with :class:`ClientClosed`.
        """
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        elif self._task is not None:
            self._task.cancel()  # connecting or in a backoff: no socket
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish(ClientClosed("the client was closed"), "closed")

    async def _request(
        self,
        frame: dict[str, Any],
        timeout: float | None,  # noqa: ASYNC109
    ) -> str:
        if self._failure is not None:
            raise self._failure
        if self._closing.is_set():
            raise ClientClosed("the client is closed")
        future = self._pending.add(frame)
        # Registered and written without an await in between, as _run
        # resends: each pending send goes once on each socket.
        if self._ws is not None:
            await self._write(frame)
        try:
            async with asyncio.timeout(timeout or self.send_timeout):
                return await future
        except TimeoutError:
            raise SendTimeout(
                f"no answer to {frame['type']} {frame['ref']} in time"
            ) from None
        finally:
            self._pending.remove(frame)

    async def _write(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return  # sent again on the next socket
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(frame, ensure_ascii=False))

    async def _run(self) -> None:
        offer = [Subprotocol(SUBPROTOCOL)]
        if self.token:
            offer.append(Subprotocol(f"bearer.{self.token}"))
        while not self._closing.is_set():
            try:
                async with ws_connect(
                    self.log.url(self.url, self.name),
                    subprotocols=offer,
                    open_timeout=self.open_timeout,
                    close_timeout=1,
                ) as ws:
                    await self._converse(ws)
                if ws.close_code == POLICY_VIOLATION:
                    raise Unauthorized(
                        f"closed by the server: {ws.close_reason}"
                    )
            except Exception as exc:  # sorted by the helpers below
                final = _final(exc)
                if final is not None:
                    self._finish(*final)
                    return
                _log_failure(exc)
            finally:
                self._ws = None
                if self._up.is_set():
                    self._up.clear()
                    self._events.put(StateChange({}, "disconnected"))
            await self._backoff.pause(self._closing)

    async def _converse(self, ws: ClientConnection) -> None:
        async with asyncio.timeout(self.open_timeout):
            welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise InvalidHandshake(f"expected welcome, got {welcome!r}")
        for frame in self.log.welcome(welcome):
            await ws.send(json.dumps(frame))
        # Published and snapshot together: see _request.
        self._ws = ws
        for frame in self._pending.frames():
            await ws.send(json.dumps(frame, ensure_ascii=False))
        self._backoff.reset()
        # Connected once every room is joined: a message published
        # before that may precede the join, and be nobody's to replay.
        self._joining = set(welcome.get("rooms", ()))
        self._welcome = welcome
        self._joined(None)
        async for data in ws:
            try:
                frame = json.loads(data)
            except ValueError:
                continue
            if isinstance(frame, dict):
                await self._receive(ws, frame)

    async def _receive(
        self, ws: ClientConnection, frame: dict[str, Any]
    ) -> None:
        out = self.log.receive(frame)
        for ref, message_id in out.acks:
            self._pending.ack(ref, message_id)
        for ref, code, message in out.errors:
            if not self._pending.refuse(ref, code, message):
                self._events.put(Error(frame, code, message, ref))
        for event in out.events:
            self._events.put(event)
            if isinstance(event, Joined) and event.mine:
                self._joined(event.room)
        for reply in out.replies:
            await ws.send(json.dumps(reply))

    def _joined(self, room: str | None) -> None:
        self._joining.discard(room)
        if not self._joining and not self._up.is_set():
            self._up.set()
            self._events.put(StateChange(self._welcome, "connected"))

    def _finish(self, failure: ChatClientError, state: str) -> None:
        if self._finished:
            return
        self._finished = True
        if state != "closed":
            self._failure = failure
            self._closing.set()
        self._pending.fail_all(failure)
        self._events.put(StateChange({}, state, str(failure)))
        self._events.put(None)


def _final(exc: Exception) -> tuple[ChatClientError, str] | None:
    """The end ``exc`` means, with its state; None if worth a retry.

    Refused credentials, and a 400, 403 or 404 at connect: the same
    request would be refused again.
    """
    refusal = _refused_credentials(exc)
    if refusal is not None:
        return refusal, "unauthorized"
    if isinstance(exc, InvalidStatus) and (
        exc.response.status_code in (400, 403, 404)
    ):
        code, text = _refused_code(exc)
        return Refused(text, code), "refused"
    return None


def _refused_credentials(exc: Exception) -> Unauthorized | None:
    """The :class:`Unauthorized` that ``exc`` means, if it means one."""
    if isinstance(exc, Unauthorized):
        return exc
    if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
        return Unauthorized(_refusal(exc))
    closed = exc.rcvd if isinstance(exc, ConnectionClosed) else None
    if closed is not None and closed.code == POLICY_VIOLATION:
        return Unauthorized(f"closed by the server: {closed.reason}")
    return None


def _log_failure(exc: Exception) -> None:
    """One line per lost connection; a traceback only for a bug."""
    if isinstance(exc, InvalidStatus):
        logger.info("chat connect refused: %s", _refusal(exc))
    elif isinstance(exc, OSError | TimeoutError | InvalidHandshake):
        logger.info("chat connect failed: %r", exc)
    elif not isinstance(exc, ConnectionClosed):
        # A bug must not end the client silently: log it, reconnect.
        logger.exception("chat client failed; reconnecting")


def _refusal(exc: InvalidStatus) -> str:
    """The server's JSON refusal as one line, or the status."""
    return _refused_code(exc)[1]


def _refused_code(exc: InvalidStatus) -> tuple[str, str]:
    """The code of the server's JSON refusal, and the refusal in a line."""
    response = exc.response
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(response.body or b"")["error"]
        reason = f" ({error['reason']})" if "reason" in error else ""
        return str(error["code"]), (
            f"{response.status_code} {error['code']}{reason}: "
            + str(error.get("message", ""))
        )
    return "refused", f"HTTP {response.status_code}"
