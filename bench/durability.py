"""What ``wait_replicas`` costs: publish latency and throughput, measured.

Starts its own primary and replica (``redis-server`` on free loopback
ports, no persistence), then publishes through :class:`RedisBroadcaster`
with ``wait_replicas=0`` and ``wait_replicas=1``:

* latency: one publish at a time, ``--latency`` of them (p50, p99);
* throughput: ``--messages`` publishes, ``--concurrency`` at a time.

Run: ``python bench/durability.py`` (needs the ``redis`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from sanic_chat.backends import broadcaster_from_url
from tests.redis_server import free_port


def start(directory: Path, *args: str) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(directory), *args],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            return port, proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


async def measure(url: str, latency: int, messages: int, width: int) -> str:
    broadcaster = broadcaster_from_url(url)
    await broadcaster.connect()
    try:
        times = []
        for i in range(latency):
            start = time.perf_counter()
            await broadcaster.publish("bench", f"m{i}")
            times.append(time.perf_counter() - start)
        times.sort()
        p50 = statistics.median(times) * 1e3
        p99 = times[int(len(times) * 0.99)] * 1e3
        queue = iter(range(messages))

        async def worker() -> None:
            for i in queue:
                await broadcaster.publish("bench", f"t{i}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(width)))
        rate = messages / (time.perf_counter() - start)
    finally:
        await broadcaster.disconnect()
    return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, {rate:,.0f} msg/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "p").mkdir()
        (Path(tmp) / "r").mkdir()
        primary, p1 = start(Path(tmp) / "p")
        _, p2 = start(
            Path(tmp) / "r", "--replicaof", "127.0.0.1", str(primary)
        )
        try:
            info = redis.Redis(port=primary).info
            while info("replication").get("slave0", {}).get("state") != (
                "online"
            ):
                time.sleep(0.05)
            for wait in (0, 1):
                url = (
                    f"redis://127.0.0.1:{primary}/0?prefix=bench{wait}:"
                    f"&wait_replicas={wait}"
                )
                result = asyncio.run(
                    measure(
                        url,
                        options.latency,
                        options.messages,
                        options.concurrency,
                    )
                )
                print(f"wait_replicas={wait}: {result}")
        finally:
            for proc in (p1, p2):
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
