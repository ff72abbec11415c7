"""Messages per second one Redis shard sustains on the chat's publish path.

A chat message costs Redis one ``EVALSHA`` of the broadcaster's script
(``XADD`` to the room's stream, ``EXPIRE``, ``PUBLISH`` to the room's
channel). This script starts a throwaway ``redis-server`` on a free port,
pinned to CPU 0 as ``bench/run.py`` pins its servers, and measures two
things, each with the Redis process's own CPU:

1. ``broadcaster``: ``RedisBroadcaster.publish`` (the code a worker runs)
   called from ``--tasks`` asyncio tasks in this process, pinned to CPU 1,
   spread over ``--rooms`` rooms. One Python process is usually the
   limit here, not Redis, so the figure that matters for Redis is
   messages per Redis CPU second.
2. ``redis-benchmark``: the same script sent by ``redis-benchmark`` (C,
   ``--clients`` connections) with random room names, which drives Redis
   itself towards its ceiling. (It draws each ``__rand_int__`` apart, so
   a message's stream and channel belong to different rooms; Redis does
   the same work.)

In both runs ``--subscribers`` pub/sub connections (workers, as Redis
sees them) subscribe to every room's channel and read what arrives, so
each message is also written out that many times by Redis; Redis's
memory per subscription is reported too.

    python bench/shard.py                          # about 10 s
    python bench/shard.py --seconds 1 --rooms 10   # tiny
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    CLIENT_CPU,
    cpu_seconds,
    redis_server,
)
from sanic_chat.backends.redis import (
    _PUBLISH,
    RedisBroadcaster,
)
from sanic_chat.backends.redis_link import RedisLink

PREFIX = "sanic-chat:"


def room_name(i: int) -> str:
    """Room ``i``, named as redis-benchmark names it (``__rand_int__``)."""
    return f"room-{i:012d}"


async def subscriber(port: int, rooms: int, stop: asyncio.Event) -> int:
    """One worker's pub/sub connection: every room, messages counted.

    A raw socket that counts ``message`` markers in what arrives, so that
    reading costs this process little and Redis's output is never the
    part that waits.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for start in range(0, rooms, 500):
        names = [f"{PREFIX}room:{room_name(i)}"
                 for i in range(start, min(start + 500, rooms))]  # fmt: skip
        parts = [b"SUBSCRIBE", *(n.encode() for n in names)]
        writer.write(
            b"*%d\r\n" % len(parts)
            + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )
    marker, tail, received = b"$7\r\nmessage\r\n", b"", 0
    while True:  # after ``stop``, read until 0.2 s of silence
        try:
            async with asyncio.timeout(0.2):
                chunk = await reader.read(1 << 16)
        except TimeoutError:
            if stop.is_set():
                break
            continue
        if not chunk:
            break
        data = tail + chunk
        received += data.count(marker)
        tail = data[-(len(marker) - 1) :]
    writer.close()
    return received


async def drive(
    url: str, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """Publish through the broadcaster from many tasks for ``seconds``."""
    broadcaster = RedisBroadcaster(url, prefix=PREFIX)
    await broadcaster.connect()
    payload = "x" * args.payload
    sent = 0
    deadline = 0.0

    async def sender(n: int) -> None:
        nonlocal sent
        i = n
        while time.monotonic() < deadline:
            await broadcaster.publish(room_name(i % args.rooms), payload)
            sent += 1
            i += args.tasks

    try:
        deadline = time.monotonic() + args.seconds
        start = time.monotonic()
        redis_cpu, own_cpu = cpu_seconds(pid), time.process_time()
        await asyncio.gather(*(sender(n) for n in range(args.tasks)))
        elapsed = time.monotonic() - start
        redis_cpu = cpu_seconds(pid) - redis_cpu
        own_cpu = time.process_time() - own_cpu
    finally:
        await broadcaster.disconnect()
    return {
        "sent": sent,
        "messages_per_s": sent / elapsed,
        "redis_cpu": redis_cpu / elapsed,
        "messages_per_redis_cpu_s": sent / max(redis_cpu, 1e-9),
        "publisher_cpu": own_cpu / elapsed,
    }


def benchmark(port: int, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    """The same script from redis-benchmark, with random room names."""
    sha = subprocess.run(
        ["redis-cli", "-p", str(port), "SCRIPT", "LOAD",
         _PUBLISH.format(publish=RedisLink.PUBLISH)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    room = "room-__rand_int__"
    requests = args.requests
    cmd = ["taskset", "-c", CLIENT_CPU, "redis-benchmark", "-p", str(port),
           "-c", str(args.clients), "-n", str(requests),
           "-r", str(args.rooms), "--csv",
           "EVALSHA", sha, "2", f"{PREFIX}history:{room}",
           f"{PREFIX}room:{room}", "x" * args.payload, "100", "86400",
           "bench"]  # fmt: skip
    before, start = cpu_seconds(pid), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"redis-benchmark failed: {out.stdout}{out.stderr}")
    elapsed = time.monotonic() - start
    used = cpu_seconds(pid) - before
    rps = float(re.findall(r'"([0-9.]+)"', out.stdout.splitlines()[-1])[0])
    return {
        "messages_per_s": rps,
        "redis_cpu": used / elapsed,
        "messages_per_redis_cpu_s": requests / max(used, 1e-9),
    }


def used_memory(port: int) -> int:
    """Redis's ``used_memory``, in bytes."""
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "memory"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return int(info.split("used_memory:")[1].split()[0])


async def measure(port: int, pid: int, args: argparse.Namespace) -> Any:
    url = f"redis://127.0.0.1:{port}/0"
    stop = asyncio.Event()
    subs = [
        asyncio.create_task(subscriber(port, args.rooms, stop))
        for _ in range(args.subscribers)
    ]
    before = used_memory(port)
    await asyncio.sleep(0.5 + args.rooms / 20_000)  # subscriptions settle
    subscriptions = max(args.rooms * args.subscribers, 1)
    result: dict[str, Any] = {
        "bytes_per_subscription": (used_memory(port) - before) / subscriptions
    }
    result["broadcaster"] = await drive(url, args, pid)
    bench = asyncio.to_thread(benchmark, port, args, pid)
    result["redis-benchmark"] = await bench
    stop.set()
    received = await asyncio.gather(*subs)
    result["subscriber_received"] = received
    result["published"] = result["broadcaster"].pop("sent") + args.requests
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args()
    for tool in ("taskset", "redis-server", "redis-cli", "redis-benchmark"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required (it comes with Redis)")
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    with redis_server() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        pid = int(
            subprocess.run(
                ["redis-cli", "-p", str(port), "INFO", "server"],
                capture_output=True, text=True, check=True,
            ).stdout.split("process_id:")[1].split()[0]
        )  # fmt: skip
        result = asyncio.run(measure(port, pid, args))
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2]
    report = {"args": vars(args) | {"out": None}, "redis": version, **result}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
