"""Quick fan-out benchmark of sanic-chat (a baseline, not the full suite).

Starts ``python -m example_app`` pinned to CPU 0, connects N receivers and
one sender from this process pinned to CPU 1, and sends 64-byte messages
with a window of W in flight. Prints deliveries per second, latency
percentiles and the server's RSS per connection.

    .venv/bin/python bench/fanout.py --receivers 1000 --messages 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    if args.target == "bare":
        command = [sys.executable, "bench/bare_server.py", str(port)]
    else:
        command = [
            sys.executable,
            "-m",
            "example_app",
            "--port",
            str(port),
            "--allow-anonymous",
        ]
    server = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # The sender is a trusted publisher here: no per-connection limit.
        env={**os.environ, "SANIC_CHAT_RATE_LIMIT": "1000000",
             "SANIC_CHAT_RATE_BURST": "1000000"},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        base_rss = rss_kib(server.pid)
        url = f"ws://127.0.0.1:{port}/ws"
        receivers: list[ClientConnection] = []
        for start in range(0, args.receivers, 250):
            n = min(250, args.receivers - start)
            receivers += await asyncio.gather(
                *(
                    connect(url, ping_interval=None, max_queue=None)
                    for _ in range(n)
                )
            )
        await asyncio.sleep(1)
        idle_rss = rss_kib(server.pid)
        latencies: list[float] = []
        done = asyncio.Event()
        expected = args.messages * args.receivers
        got = 0

        async def receive(ws: ClientConnection) -> None:
            nonlocal got
            async for data in ws:
                # No json.loads per delivery: the load generator must stay
                # cheaper than the server it measures.
                at = data.find('"b:')
                if at >= 0:
                    stamp = float(data[at + 3 : at + 21])
                    latencies.append(time.perf_counter() - stamp)
                    got += 1
                    if got == expected:
                        done.set()

        tasks = [asyncio.create_task(receive(ws)) for ws in receivers]
        await asyncio.sleep(0.5)
        async with connect(url, ping_interval=None, max_queue=None) as sender:
            window = asyncio.Semaphore(args.window)

            async def read_acks() -> None:
                async for data in sender:
                    if json.loads(data)["type"] in ("ack", "error"):
                        window.release()

            ack_reader = asyncio.create_task(read_acks())
            started = time.perf_counter()
            client_cpu = _cpu_seconds(os.getpid())
            server_cpu = _cpu_seconds(server.pid)
            for i in range(args.messages):
                await window.acquire()
                stamp = f"{time.perf_counter():<18.6f}"
                text = ("b:" + stamp).ljust(64, ".")
                await sender.send(json.dumps(
                    {"type": "message", "room": "lobby", "text": text, "ref": str(i)}
                ))  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 120)
            elapsed = time.perf_counter() - started
            client_cpu = (_cpu_seconds(os.getpid()) - client_cpu) / elapsed
            server_cpu = (_cpu_seconds(server.pid) - server_cpu) / elapsed
            ack_reader.cancel()
        lat = sorted(latencies)
        print(
            json.dumps(
                {
                    "target": args.target,
                    "receivers": args.receivers,
                    "messages": args.messages,
                    "deliveries": got,
                    "expected": expected,
                    "deliveries_per_s": round(got / elapsed),
                    "p50_ms": round(statistics.median(lat) * 1000, 2),
                    "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
                    "server_cpu_percent": round(server_cpu * 100),
                    "client_cpu_percent": round(client_cpu * 100),
                    "rss_per_idle_connection_kib": round(
                        (idle_rss - base_rss) / args.receivers, 1
                    ),
                }
            )
        )
        for t in tasks:
            t.cancel()
        await asyncio.gather(*(ws.close() for ws in receivers))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument(
        "--target",
        choices=["sanic-chat", "bare"],
        default="sanic-chat",
        help="the example app, or the bare websockets.broadcast() server",
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
