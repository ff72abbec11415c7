"""The benchmark runs (tiny), so it cannot rot; speed is judged in bench/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("target", ["sanic-chat", "bare"])
def test_fanout_benchmark_smoke(target: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "bench/fanout.py",
            "--target",
            target,
            "--receivers",
            "20",
            "--messages",
            "20",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["deliveries"] == result["expected"] == 400
    assert result["deliveries_per_s"] > 0
