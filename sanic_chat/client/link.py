"""The client's I/O: one socket at a time, reconnected until closed.

:class:`Link` owns the task that connects, reads frames into the
client's :class:`~sanic_chat.client.state.RoomLog` and
:class:`~sanic_chat.client.roster.Roster`, renews the token before it
expires, and reconnects with :class:`~sanic_chat.backoff.Backoff` when
the socket drops. Requests wait in ``PendingSends`` under a stable
``ref`` until answered: each new socket gets them again, with the same
``ref``, so a server with idempotent publish answers a resend whose
first ack was lost with the original id instead of publishing it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
from .answers import ANSWERED, Answers
from .errors import ChatClientError, Refused, Unauthorized
from .events import Delivery, Error, Joined, StateChange, event_from_frame
from .roster import Roster
from .sends import PendingSends
from .state import RoomLog
from .tokens import TokenSource, refresh_delay

__all__ = ["Link"]

logger = logging.getLogger(__name__)

SUBPROTOCOL = "sanic-chat"  # as sanic_chat.authenticators.SUBPROTOCOL
POLICY_VIOLATION = 1008

Frame = dict[str, Any]


class Link:
    """The connection of one :class:`~sanic_chat.client.ChatClient`.

    Args:
        url: The chat endpoint.
        name: The guest's display name, if any.
        open_timeout: Seconds for each connect and handshake.
        log: Rooms and ids, across sockets.
        pending: Requests waiting for their answer.
        events: Where events go for the application.
        backoff: Delays between reconnects.
        tokens: The token to offer, renewed when it can be.
    """

    def __init__(
        self,
        url: str,
        name: str | None,
        open_timeout: float,
        log: RoomLog,
        pending: PendingSends,
        events: Delivery,
        backoff: Backoff,
        tokens: TokenSource,
    ) -> None:
        self.url, self.name, self.open_timeout = url, name, open_timeout
        self.log, self.pending, self.events = log, pending, events
        self.backoff, self.tokens = backoff, tokens
        self.roster = Roster()
        self.answers = Answers()
        self.ws: ClientConnection | None = None
        self.up = asyncio.Event()
        self.closing = asyncio.Event()
        self.failure: ChatClientError | None = None
        self._finished = False
        self._joining: set[str | None] = set()
        self._welcome: Frame = {}
        self._retried = False  # get_token asked after a refusal

    async def write(self, frame: Frame) -> None:
        """Send ``frame`` on the current socket; nothing without one."""
        ws = self.ws
        if ws is None:
            return  # requests go again on the next socket
        with contextlib.suppress(ConnectionClosed):
            await self._send(ws, frame)

    async def _send(self, ws: ClientConnection, frame: Frame) -> None:
        # Noted before the write, which may yield: answers come in order.
        self.answers.sent(frame)
        await ws.send(json.dumps(frame, ensure_ascii=False))

    async def run(self) -> None:
        """Connect, converse and reconnect until closed or refused."""
        while not self.closing.is_set():
            try:
                token = await self.tokens.fresh(self.open_timeout)
                offer = [Subprotocol(SUBPROTOCOL)]
                if token:
                    offer.append(Subprotocol(f"bearer.{token}"))
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
                if final is not None and (
                    self._retried
                    or not isinstance(final[0], Unauthorized)
                    or not self.tokens.renewable
                ):
                    self.finish(*final)
                    return
                if final is not None:  # ask get_token once, right away
                    self._retried = True
                    logger.info("chat credentials refused: %s", final[0])
                    continue
                _log_failure(exc)
            finally:
                self._down()
            await self.backoff.pause(self.closing)

    def _down(self) -> None:
        self.ws = None
        self.answers.clear()
        self.roster.reset()
        if self.up.is_set():
            self.up.clear()
            self.events.put(StateChange({}, "disconnected"))

    async def _converse(self, ws: ClientConnection) -> None:
        async with asyncio.timeout(self.open_timeout):
            welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise InvalidHandshake(f"expected welcome, got {welcome!r}")
        self._retried = False  # let in: the next refusal may ask again
        for frame in self.log.welcome(welcome):
            await self._send(ws, frame)
        # Published and snapshot together: see ChatClient._request.
        self.ws = ws
        for frame in self.pending.frames():
            await self._send(ws, frame)
        self.backoff.reset()
        # Connected once every room is joined: a message published
        # before that may precede the join, and be nobody's to replay.
        self._joining = set(welcome.get("rooms", ()))
        self._welcome = welcome
        self._joined(None)
        renewal = asyncio.create_task(self._renew(ws), name="chat-refresh")
        try:
            async for data in ws:
                try:
                    frame = json.loads(data)
                except ValueError:
                    continue
                if isinstance(frame, dict):
                    await self._receive(ws, frame)
        finally:
            renewal.cancel()

    async def _renew(self, ws: ClientConnection) -> None:
        """Send a fresh token shortly before the current one expires."""
        while self.tokens.renewable:
            delay = refresh_delay(self.tokens.token)
            if delay is None:
                return
            # At least a second apart: a get_token that hands back the
            # same token must not spin (nor spend the rate limit).
            await asyncio.sleep(max(delay, 1.0))
            try:
                token = await self.tokens.fresh()
            except Exception:
                logger.exception("get_token failed; the token will expire")
                return
            if token:
                await self.write({"type": "refresh", "token": token})

    async def _receive(self, ws: ClientConnection, frame: Frame) -> None:
        kind = frame.get("type")
        ref = self.answers.answer(frame) if kind in ANSWERED else None
        if ref is not None:  # the application's request
            self.pending.resolve(ref, _answer(frame, self.log.me))
            return
        if kind == "error" and isinstance(frame.get("ref"), str):
            self.answers.refused(frame["ref"])
        replies = [] if kind == "presence" else self._logged(frame)
        if kind in ("presence", "joined", "left"):
            mine = frame.get("user") == self.log.me
            changes, asks = self.roster.receive(frame, mine)
            for event in changes:
                self.events.put(event)
            replies += asks
        for reply in replies:
            await self._send(ws, reply)

    def _logged(self, frame: Frame) -> list[Frame]:
        """Pass ``frame`` through the room log; return its replies."""
        out = self.log.receive(frame)
        for ref, message_id in out.acks:
            self.pending.resolve(ref, message_id)
        for ref, code, message in out.errors:
            if not self.pending.refuse(ref, code, message):
                self.events.put(Error(frame, code, message, ref))
        for event in out.events:
            self.events.put(event)
            if isinstance(event, Joined) and event.mine:
                self._joined(event.room)
        return out.replies

    def _joined(self, room: str | None) -> None:
        self._joining.discard(room)
        if not self._joining and not self.up.is_set():
            self.up.set()
            self.events.put(StateChange(self._welcome, "connected"))

    def finish(self, failure: ChatClientError, state: str) -> None:
        """End for good: fail what waits, tell the application why."""
        if self._finished:
            return
        self._finished = True
        if state != "closed":
            self.failure = failure
            self.closing.set()
        self.pending.fail_all(failure)
        self.events.put(StateChange({}, state, str(failure)))
        self.events.put(None)


def _answer(frame: Frame, me: dict[str, str] | None) -> object:
    """What a request answered by ``frame`` returns to its caller."""
    if frame.get("type") == "history":
        found = (
            event_from_frame(m, me)
            for m in frame.get("messages", ())
            if isinstance(m, dict) and "id" in m
        )
        return [m for m in found if m is not None]
    if frame.get("type") == "receipts":
        return dict(frame.get("read") or {})
    return event_from_frame(frame, me)


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
