"""The benchmark runs (tiny), so it cannot rot; speed is judged in bench/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_fanout_benchmark_smoke() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "bench/fanout.py",
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
