"""The benchmark runs (tiny), so it cannot rot; speed is judged in bench/.

``bench/run.py --smoke`` drives every target (sanic-chat, the bare
``websockets.broadcast()`` server, python-socketio, both on Redis with
two processes, sanic-chat's two processes on a three-primary Redis
Cluster, sanic-chat under uvicorn, and the floor under sanic-chat:
Sanic's upgrade with no chat) through the scenarios with a
handful of clients (the 20,000-connection row, S7, with 30: sanic-chat
and the bare server only), using the
same Node.js load generator as the real run. Every delivery must arrive,
in the same order for every member of a room.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_target_delivers_everything_in_order(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--repeat", "1",
         "--only", "S1,S3,S4,S5,S5-256,S7", "--out", str(out),
         "--chart", str(tmp_path / "chart.png")],
        cwd=ROOT, check=True, timeout=220,
    )  # fmt: skip
    results = json.loads(out.read_text())["results"]
    fanout, rooms = results["S1"], results["S3"]
    assert set(fanout) == {
        "sanic-chat", "bare", "socketio", "sanic-chat-redis", "socketio-redis",
        "sanic-chat-uvicorn", "sanic-chat-cluster",
    }  # fmt: skip
    for target in fanout:
        assert fanout[target]["deliveries_per_s"]["median"] > 0, target
        assert fanout[target]["lost"]["max"] == 0, target
    assert set(rooms) == set(fanout) - {"sanic-chat-uvicorn"}
    for target in rooms:
        assert rooms[target]["lost"]["max"] == 0, target
        assert rooms[target]["rooms_out_of_order"]["max"] == 0, target
    for target in (
        "sanic-chat", "bare", "socketio", "sanic-chat-uvicorn", "sanic-floor"
    ):  # fmt: skip
        assert results["S4"][target]["connect_failures"]["max"] == 0
        assert results["S4"][target]["rss_per_conn_kib"]["median"] > 0
        assert results["S5"][target]["connections_per_s"]["median"] > 0
        # Recorded; with a handful of connections it may round to 0 (the
        # kernel counts CPU time in 10 ms ticks).
        assert results["S5"][target]["server_us_per_conn"]["min"] >= 0
    # Every client of the two-worker storms got its joined frame.
    for target in ("sanic-chat-redis", "sanic-chat-cluster"):
        storm = results["S5-256"][target]
        assert storm["connections_per_s"]["median"] > 0, target
        assert storm["connect_failures"]["max"] == 0, target
    # The scale row, for sanic-chat and its ceiling only: everyone
    # connected, and every message reached every one of them.
    scale = results["S7"]
    assert set(scale) == {"sanic-chat", "bare"}
    for target in scale:
        assert scale[target]["connected"]["min"] == 30, target
        assert scale[target]["deliveries"]["min"] == 5 * 30, target
        assert scale[target]["lost"]["max"] == 0, target
        assert scale[target]["p99_ms"]["median"] > 0, target
        assert scale[target]["rss_per_conn_kib"]["median"] > 0, target
    assert (tmp_path / "chart.png").stat().st_size > 10_000
