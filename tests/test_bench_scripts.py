"""The scaling plan's scripts: ``bench/slots.py`` and ``bench/shard.py``.

docs/scaling.md quotes both. The slot script is pure and checked here
against redis-cli's slot split and the cluster backend's key names; the
shard script starts a throwaway redis-server, so its tiny run is slow.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from redis.crc import key_slot

from bench import slots

ROOT = Path(__file__).parent.parent


def test_slots_are_split_as_redis_cli_splits_them() -> None:
    # redis-cli --cluster create with three primaries assigns these.
    assert slots.slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]
    ranges = slots.slot_ranges(16)
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1
    assert {last - first + 1 for first, last in ranges} == {1024}


def test_a_rooms_slot_is_the_slot_of_every_key_of_the_room() -> None:
    for room in ["lobby", "room-42", *slots.room_names("uuid", 3)]:
        slot = slots.room_slot(room)
        assert slot == key_slot(room.encode())  # the tag is the room
        for kind in ("room", "history", "presence", "read"):
            assert key_slot(slots.LINK.key(kind, room).encode()) == slot


def test_spread_counts_every_room_once() -> None:
    names = slots.room_names("uuid", 1000)
    assert names == slots.room_names("uuid", 1000)  # seeded
    assert len(set(names)) == 1000
    row = slots.spread(names, 3)
    assert sum(row["per_shard"]) == 1000
    assert row["min"] <= row["mean"] <= row["max"]
    assert row["max_over_mean"] == row["max"] / row["mean"]
    one = slots.spread(["lobby"] * 5, 16)
    assert one["max"] == 5 and one["min"] == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_shard_script_publishes_and_every_subscriber_gets_all(
    tmp_path: Path,
) -> None:
    out = tmp_path / "shard.json"
    subprocess.run(
        [sys.executable, "bench/shard.py", "--seconds", "0.5",
         "--rooms", "20", "--requests", "2000", "--subscribers", "2",
         "--out", str(out)],
        cwd=ROOT, check=True, timeout=50, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    report = json.loads(out.read_text())
    for part in ("broadcaster", "redis-benchmark"):
        assert report[part]["messages_per_s"] > 0, part
        assert report[part]["redis_cpu"] > 0, part
    assert report["published"] > 2000
    assert report["subscriber_received"] == [report["published"]] * 2


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_storms_script_storms_every_variant(tmp_path: Path) -> None:
    """``bench/storms.py`` (docs/benchmarks.md quotes it): every variant
    sets up every connection, and each gets a CPU figure and a rate."""
    out = tmp_path / "storms.json"
    subprocess.run(
        [sys.executable, "bench/storms.py", "--rounds", "1",
         "--connections", "40", "--out", str(out)],
        cwd=ROOT, check=True, timeout=110, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report) == {
        "sanic-chat (JWT, presence)",
        "guests, no token",
        "presence notices off",
        "sanic-floor",
        "bare",
    }
    for name, rounds in report.items():
        assert len(rounds) == 1, name
        us, rate = rounds[0]
        assert us >= 0 and rate > 0, name
