"""How rooms spread over the primaries of a Redis Cluster.

On a cluster every key and channel of one room carries the room's name as
its hash tag (``sanic-chat:history:{lobby}``), so a room lives on the one
primary that owns ``CRC16(room) mod 16384``. This script names the keys
as the cluster backend does (``ClusterLink.key``) and computes their slot
with redis-py's own ``key_slot`` for 10,000 room names of two kinds
(``room-0`` .. ``room-9999``, and ``team-<uuid4>`` from a fixed seed) and
counts the rooms per primary when the 16,384 slots are split evenly, as
``redis-cli --cluster create`` splits them. docs/scaling.md quotes its
output.

    python bench/slots.py                    # 10,000 rooms, 3 and 16 shards
    python bench/slots.py --rooms 1000 --shards 3,6 --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sanic_chat.backends.redis_cluster import ClusterLink

# Only names keys here: nothing connects.
LINK = ClusterLink(
    "redis+cluster://127.0.0.1:7000/", prefix="sanic-chat:", timeout=1
)


def room_slot(room: str) -> int:
    """The slot of ``room``'s keys and channel, as the backend names them."""
    return key_slot(LINK.key("history", room).encode())


def slot_ranges(shards: int) -> list[tuple[int, int]]:
    """First and last slot of each primary, as redis-cli assigns them."""
    per = REDIS_CLUSTER_HASH_SLOTS / shards
    ranges, first = [], 0
    for i in range(shards):
        last = round(per * (i + 1)) - 1
        if i == shards - 1:
            last = REDIS_CLUSTER_HASH_SLOTS - 1
        ranges.append((first, last))
        first = last + 1
    return ranges


def room_names(kind: str, count: int, seed: int = 16) -> list[str]:
    """``count`` room names: ``numbered`` (room-N) or ``uuid`` (team-...)."""
    if kind == "numbered":
        return [f"room-{i}" for i in range(count)]
    rng = random.Random(seed)
    return [
        f"team-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        for _ in range(count)
    ]


def spread(rooms: list[str], shards: int) -> dict[str, Any]:
    """Rooms per primary and their min, max, mean and standard deviation."""
    ranges = slot_ranges(shards)
    bounds = [last for _, last in ranges]
    counts = [0] * shards
    for room in rooms:
        slot = room_slot(room)
        counts[next(i for i, last in enumerate(bounds) if slot <= last)] += 1
    mean = len(rooms) / shards
    return {
        "shards": shards,
        "rooms": len(rooms),
        "per_shard": counts,
        "min": min(counts),
        "max": max(counts),
        "mean": mean,
        "stddev": statistics.pstdev(counts),
        "max_over_mean": max(counts) / mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--shards", default="3,16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        {"names": kind, **spread(room_names(kind, args.rooms), int(n))}
        for kind in ("numbered", "uuid")
        for n in args.shards.split(",")
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| names | shards | rooms per shard: min | max | mean | stddev "
          "| max / mean |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['names']} | {r['shards']} | {r['min']} | {r['max']} "
              f"| {r['mean']:.1f} | {r['stddev']:.1f} "
              f"| {r['max_over_mean']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
