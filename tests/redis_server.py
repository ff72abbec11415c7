"""Our own ``redis-server`` processes: free ports, never the shared 6379."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def redis_server_binary() -> str:
    """Path of ``redis-server``; skip (fail under CI) when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server not found; install it to run the Redis tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def wait_listening(
    port: int, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait (10 s at most) until something accepts connections on ``port``.

    Raises:
        RuntimeError: ``process`` exited first, or nothing listens in time.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.1):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError("redis-server exited") from None
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on a free port, with its data in ``directory``.

    ``appendonly`` keeps data across :meth:`kill` and :meth:`start`, as a
    production Redis with persistence would. With ``password``, clients
    must authenticate (``requirepass``); :attr:`url` does not carry it.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"),
                *(["--requirepass", self.password] if self.password else []),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_listening(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
