"""Our own Redis Cluster: 3 primaries, 3 replicas, on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .redis_server import redis_server_binary, wait_listening


def redis_cli_binary() -> str:
    """Path of ``redis-cli``; skip (fail under CI) when it is missing."""
    found = shutil.which("redis-cli")
    if found is None:
        message = "redis-cli not found; install it to run the cluster tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_cluster_port() -> int:
    """A free port whose cluster bus port (``port + 10000``) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            port = port % 40000 + 1024
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port


class ClusterNode:
    """One ``redis-server`` of the cluster, restartable with its config."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000",
                "--cluster-replica-validity-factor", "0",
                "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_listening(self.port, self.process)

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): connections stay open, unanswered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class RedisCluster:
    """Six cluster-enabled ``redis-server`` joined by ``redis-cli``.

    No persistence: a killed primary's replica takes over (failover is
    what the tests are about), and a restarted node rejoins as a replica
    of it, with its cluster config kept in ``nodes.conf``.
    """

    def __init__(self, directory: Path, size: int = 6) -> None:
        self.nodes = [
            ClusterNode(directory / f"node{i}", free_cluster_port())
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])
        return f"redis+cluster://{hosts}/"

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [redis_cli_binary(), "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            timeout=30,
            check=True,
        )
        return done.stdout.decode()

    def start(self) -> None:
        redis_cli_binary()
        for node in self.nodes:
            node.start()
        self.cli(
            self.nodes[0].port,
            "--cluster", "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas", "1",
            "--cluster-yes",
        )  # fmt: skip
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def wait_ok(self, timeout: float = 30) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and
        agrees on three primaries that serve every slot, and every
        running replica is in sync (``WAIT`` counts only those)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [n for n in self.nodes if n.process is not None]
            if all(self._ok(n) for n in running) and all(
                self._synced(n) for n in running
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not become ok")

    def _synced(self, node: ClusterNode) -> bool:
        """A replica whose link is up, or a primary whose replicas are."""
        try:
            info = self.cli(node.port, "info", "replication")
        except subprocess.CalledProcessError:
            return False
        if "role:slave" in info:
            return "master_link_status:up" in info
        replicas = [
            line for line in info.splitlines() if line.startswith("slave")
        ]
        return all("state=online" in line for line in replicas)

    def _ok(self, node: ClusterNode) -> bool:
        try:
            info = self.cli(node.port, "cluster", "info")
            nodes = self.cli(node.port, "cluster", "nodes")
        except subprocess.CalledProcessError:
            return False
        live_primaries = [
            line
            for line in nodes.splitlines()
            if " master " in line.replace(",", " ") and "fail" not in line
        ]
        return "cluster_state:ok" in info and len(live_primaries) == 3

    def keyslot(self, key: str) -> int:
        return int(self.cli(self.nodes[0].port, "cluster", "keyslot", key))

    def owner(self, key: str) -> ClusterNode:
        """The running primary that owns ``key``'s slot."""
        return self.owner_of_slot(self.keyslot(key))

    def owner_of_slot(self, slot: int) -> ClusterNode:
        """The running primary that owns ``slot``."""
        running = [n for n in self.nodes if n.process is not None]
        for line in self.cli(running[0].port, "cluster", "nodes").splitlines():
            fields = line.split()
            flags = fields[2].split(",")
            if "master" not in flags or "fail" in flags:
                continue
            for span in fields[8:]:
                first, _, last = span.partition("-")
                if int(first) <= slot <= int(last or first):
                    port = int(fields[1].split(":")[1].split("@")[0])
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no primary serves slot {slot}")

    def primaries(self) -> list[ClusterNode]:
        """The running primaries."""
        running = [n for n in self.nodes if n.process is not None]
        out = self.cli(running[0].port, "cluster", "nodes")
        ports = {
            int(line.split()[1].split(":")[1].split("@")[0])
            for line in out.splitlines()
            if "master" in line.split()[2] and "fail" not in line.split()[2]
        }
        return [n for n in self.nodes if n.port in ports]

    def node_id(self, node: ClusterNode) -> str:
        return self.cli(node.port, "cluster", "myid").strip()

    def move_slot(self, slot: int, target: ClusterNode) -> None:
        """Migrate ``slot`` with its keys to ``target``, as ``redis-cli
        --cluster reshard`` does, and tell every primary."""
        source = self.owner_of_slot(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        self.cli(target.port, "cluster", "setslot", str(slot),
                 "importing", source_id)  # fmt: skip
        self.cli(source.port, "cluster", "setslot", str(slot),
                 "migrating", target_id)  # fmt: skip
        while True:
            keys = self.cli(
                source.port, "cluster", "getkeysinslot", str(slot), "100"
            ).split()
            if not keys:
                break
            self.cli(source.port, "migrate", "127.0.0.1", str(target.port),
                     "", "0", "5000", "keys", *keys)  # fmt: skip
        for node in (target, source, *self.primaries()):
            self.cli(node.port, "cluster", "setslot", str(slot),
                     "node", target_id)  # fmt: skip
        self.wait_ok()
