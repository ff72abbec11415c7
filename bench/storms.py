"""S5 connect storms against variants of the example app, taking turns.

Where does sanic-chat's connection set-up cost go? Each variant is the
example app as ``run.py`` starts it, with one thing turned off, next to
the Sanic floor and the bare server; every storm starts fresh servers
(``run.py``'s own ``servers()``, pinned to CPU 0) and the load generator
on CPU 1, and the variants take turns so that a machine that drifts
weighs on all of them alike. Reported: the servers' CPU per connection
(median, min-max) and the connection rate.

    python bench/storms.py                  # 6 rounds of 2,000 connections
    python bench/storms.py --rounds 3 --connections 500

docs/benchmarks.md ("Round 4, and why S5 stops here") quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the benchmark's own helpers, by path


@dataclasses.dataclass
class Variant:
    """A server to storm: a ``run.py`` target, with changes."""

    name: str
    target: run.Target
    args: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    token: bool = True  # clients send a JWT (chat targets only)

    def started(self) -> run.Target:
        base = self.target
        extra_args, extra_env = self.args, self.env

        class Changed(run.Target):
            def commands(
                self, ports: list[int], redis_url: str | None
            ) -> list[list[str]]:
                cmds = base.commands(ports, redis_url)
                return [cmd + extra_args for cmd in cmds]

            def env(self, redis_url: str | None) -> dict[str, str]:
                return {**base.env(redis_url), **extra_env}

        return Changed(**{**dataclasses.asdict(base), "token": self.token})


CHAT = run.TARGETS["sanic-chat"]
VARIANTS = [
    Variant("sanic-chat (JWT, presence)", CHAT),
    Variant("guests, no token", CHAT, args=["--allow-anonymous"], token=False),
    Variant(
        "presence notices off",
        CHAT,
        env={"SANIC_CHAT_PRESENCE_EVENTS": "false"},
    ),
    Variant("sanic-floor", run.TARGETS["sanic-floor"]),
    Variant("bare", run.TARGETS["bare"]),
]


def storm(variant: Variant, connections: int) -> tuple[float, float]:
    """One storm on fresh servers: (server µs per connection, conn/s)."""
    scenario = run.Scenario(
        "S5",
        "connect storm",
        {"scenario": "storm", "receivers": connections, "concurrency": 100},
    )
    result = run.run_once(variant.started(), scenario, None)
    if result.get("connect_failures") or "server_us_per_conn" not in result:
        raise RuntimeError(f"{variant.name}: {result}")
    return result["server_us_per_conn"], result["connections_per_s"]


def main(argv: list[str] | None = None) -> dict[str, list[list[float]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    got: dict[str, list[list[float]]] = {v.name: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            got[variant.name].append(list(storm(variant, args.connections)))
    print("| variant | server µs per connection | connections/s |")
    print("|---|---|---|")
    for name, rows in got.items():
        us = [r[0] for r in rows]
        rate = [r[1] for r in rows]
        print(
            f"| {name} | {statistics.median(us):,.0f} "
            f"({min(us):,.0f}-{max(us):,.0f}) | "
            f"{statistics.median(rate):,.0f} |"
        )
    if args.out:
        args.out.write_text(json.dumps(got, indent=1))
    return got


if __name__ == "__main__":
    main()
