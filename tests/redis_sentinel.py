"""A primary, one replica and three sentinels on free loopback ports.

Started once per session (the ``redis_sentinel`` fixture) and shared:
tests use their own key prefixes. A fault test that kills the primary
calls :meth:`SentinelSetup.restore` afterwards, so the next test finds a
primary with one replica again, wherever the primary now is.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from .redis_server import (
    RedisServer,
    free_port,
    redis_server_binary,
    wait_listening,
)

SERVICE = "chat"


class SentinelSetup:
    """Two Redis servers (either may be the primary) and three sentinels."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        first = RedisServer(directory / "a", args=_DEBUG)
        second = RedisServer(
            directory / "b",
            args=(*_DEBUG, "--replicaof", "127.0.0.1", str(first.port)),
        )
        self.servers = [first, second]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0" + (
            f"?{query}" if query else ""
        )

    def start(self) -> None:
        binary = redis_server_binary()
        for server in self.servers:
            server.start()
        for i, port in enumerate(self.sentinel_ports):
            home = self.directory / f"sentinel{i}"
            home.mkdir(parents=True, exist_ok=True)
            config = home / "sentinel.conf"
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {home}\n"
                f"logfile {home / 'sentinel.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 "
                f"{self.servers[0].port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 2000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [binary, str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_listening(port, self.sentinels[-1])
        self.wait_healthy()

    def primary(self) -> RedisServer:
        """The server the sentinels name as primary now."""
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def replica(self) -> RedisServer:
        port = self.primary_port()
        return next(s for s in self.servers if s.port != port)

    def primary_port(self) -> int:
        with redis.Redis(port=self.sentinel_ports[0]) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def wait_healthy(self, within: float = 30) -> None:
        """Wait until every sentinel agrees on a primary that is up and
        has one replica in sync, known to the sentinels."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._healthy():
                return
            time.sleep(0.1)
        raise RuntimeError("the sentinel setup did not become healthy")

    def _healthy(self) -> bool:
        try:
            ports = set()
            for sentinel_port in self.sentinel_ports:
                with redis.Redis(port=sentinel_port) as sentinel:
                    state = sentinel.sentinel_master(SERVICE)
                    if state["is_sdown"] or state["num-slaves"] < 1:
                        return False
                    replicas = sentinel.sentinel_slaves(SERVICE)
                    if not any(
                        not r["is_sdown"] and r["master-link-status"] == "ok"
                        for r in replicas
                    ):
                        return False
                    ports.add(int(state["port"]))
            if len(ports) != 1:
                return False
            with redis.Redis(port=ports.pop()) as primary:
                info = primary.info("replication")
                return bool(
                    info["role"] == "master"
                    and info["connected_slaves"] >= 1
                    and info["slave0"]["state"] == "online"
                )
        except (redis.RedisError, OSError, KeyError):
            return False

    def kill_primary(self) -> RedisServer:
        """Kill the primary (SIGKILL); return it, for :meth:`restore`."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_failover(self, old_port: int, within: float = 30) -> None:
        """Wait until the sentinels name another primary than ``old_port``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if self.primary_port() != old_port:
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("no failover")

    def restore(self) -> None:
        """Restart any killed server (sentinels make it a replica) and
        wait until the setup is healthy again."""
        for server in self.servers:
            if server.process is None:
                server.start()
        self.wait_healthy()

    def stop(self) -> None:
        for process in self.sentinels:
            process.kill()
            process.wait(10)
        for server in self.servers:
            server.kill()


# DEBUG SLEEP lets a test stall the replica so that replication lags.
_DEBUG = ("--enable-debug-command", "local")
