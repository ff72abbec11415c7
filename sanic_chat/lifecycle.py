"""A chat's life in one worker: start, graceful shutdown, stop.

The blueprint's listeners drive these (``before_server_start``,
``before_server_stop``, ``after_server_stop``), once per worker; they are
apart from :class:`~sanic_chat.Chat`, which is what server code talks
to while the worker serves.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import CloseCode
from .metrics import PrometheusExporter, room_labeller

if TYPE_CHECKING:
    from .chat import Chat

__all__ = ["shutdown", "start", "stop"]

logger = logging.getLogger(__name__)


async def start(chat: Chat) -> None:
    """Connect the broadcaster (once per worker, before serving).

    Also creates the Prometheus exporter when a metrics route is
    configured and prometheus-client is installed.
    """
    chat.closing = False
    config = chat.config
    if config.metrics_path and chat.exporter is None:
        try:
            chat.exporter = PrometheusExporter(
                chat.metrics_snapshot,
                room_labeller(
                    config.metrics_room_labels,
                    config.metrics_key or config.api_key,
                ),
            )
        except ImportError:
            logger.info(
                "sanic-chat: no /metrics (pip install prometheus-client)"
            )
    await chat.broadcaster.connect()
    chat.hub.start()
    if chat.exporter is not None:
        chat.exporter.start()


async def shutdown(chat: Chat) -> None:
    """Close every socket with 1012 (service restart), in batches.

    Each socket gets the frames already queued for it first; the
    batches are spread over ``shutdown_spread`` seconds so clients do
    not reconnect all at once. Messages in flight are in history, so
    clients that reconnect with ``since`` lose nothing.
    """
    chat.closing = True
    await chat.hub.close_all(
        CloseCode.SERVICE_RESTART,
        "server restarting",
        chat.config.shutdown_close_timeout,
        chat.config.shutdown_spread,
    )


async def stop(chat: Chat) -> None:
    """Stop room subscriptions and disconnect the broadcaster."""
    if chat.exporter is not None:
        await chat.exporter.stop()
    if chat.hub.archive is not None:
        await chat.hub.archive.stop()
    await chat.hub.stop()
    await chat.broadcaster.disconnect()
