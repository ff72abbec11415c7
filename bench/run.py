"""Run the sanic-chat benchmarks side by side and print one table.

Every scenario runs against every target in the same run, on loopback:

* ``sanic-chat``: ``python -m example_app`` as users run it (one worker,
  in-memory broadcaster, every client authenticated with its own JWT);
* ``bare``: ``bench/bare_server.py``, ``websockets.broadcast()`` on uvloop;
* ``socketio``: ``bench/socketio_server.py``, python-socketio on aiohttp
  and uvloop;
* ``sanic-chat-redis`` and ``socketio-redis``: two server processes
  sharing a Redis server that this script starts on a free port;
* ``sanic-chat-cluster``: two sanic-chat processes on a Redis Cluster of
  three primaries (no replicas) that this script starts on free ports;
* ``sanic-chat-redis-1``: one sanic-chat process on Redis (S6 only);
* ``sanic-chat-uvicorn``: the same example app served by an ASGI server,
  ``uvicorn example_app.asgi:app`` with uvicorn's defaults (the portable
  transport; S1, S4 and S5 only).

S7, the scale row (20,000 connections on one worker), runs for
``sanic-chat`` and ``bare`` only, to bound the full run's time.

Servers (and Redis, every node of the cluster) are pinned to CPU 0, the load generator
(``bench/loadgen.mjs``, Node.js, no dependencies) to CPU 1. Each run starts
fresh servers. Medians of ``--repeat`` runs are reported with their
spread; results go to ``bench/results/latest.json`` and, with
``--chart``, a PNG chart.

    python bench/run.py                      # everything (~28 minutes)
    python bench/run.py --smoke              # tiny sizes, a few seconds each
    python bench/run.py --only S1 --targets sanic-chat,bare
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SECRET = "bench-secret-bench-secret-bench-secret"
SERVER_CPU, CLIENT_CPU = "0", "1"


@dataclass(frozen=True)
class Scenario:
    """One measured situation, as a load generator spec."""

    name: str
    title: str
    spec: dict[str, Any]


def scenarios(smoke: bool) -> list[Scenario]:
    """The issue's scenarios (tiny versions with ``smoke``)."""
    n = (lambda full, tiny: tiny) if smoke else (lambda full, tiny: full)
    fan = {"scenario": "fanout", "window": 20, "seconds": n(10, 2)}
    return [
        Scenario("S1", "fan-out, 1000 receivers", {
            **fan, "receivers": n(1000, 20), "messages": n(300, 20)}),
        Scenario("S2", "20 msg/s to 1000 receivers", {
            "scenario": "rate", "receivers": n(1000, 20), "rate": 20,
            "seconds": n(5, 1), "drainSeconds": 5}),
        Scenario("S3", "100 rooms of 20, 50 senders, 200 msg/s", {
            "scenario": "rate", "receivers": n(2000, 40),
            "rooms": n(100, 4), "senders": n(50, 2), "rate": n(200, 20),
            "seconds": n(5, 1), "drainSeconds": 5}),
        Scenario("S4", "5000 idle connections", {
            "scenario": "idle", "receivers": n(5000, 50)}),
        Scenario("S5", "connect storm, 2000 connections", {
            "scenario": "storm", "receivers": n(2000, 50)}),
        Scenario("S5-256", "connect storm, 1000 conns, 256 in flight", {
            "scenario": "storm", "receivers": n(1000, 50),
            "concurrency": n(256, 16)}),
        Scenario("S6", "300 rooms of 10, 100 senders, 3000 msg/s", {
            "scenario": "rate", "receivers": n(3000, 40),
            "rooms": n(300, 4), "senders": n(100, 2), "rate": n(3000, 20),
            "seconds": n(5, 1), "drainSeconds": 5}),
        Scenario("S1-100", "fan-out, 100 receivers", {
            **fan, "receivers": n(100, 5), "messages": n(1000, 20)}),
        Scenario("S1-5000", "fan-out, 5000 receivers", {
            **fan, "receivers": n(5000, 40), "messages": n(100, 10)}),
        Scenario("S4-1000", "1000 idle connections", {
            "scenario": "idle", "receivers": n(1000, 20)}),
        Scenario("S4-10000", "10000 idle connections", {
            "scenario": "idle", "receivers": n(10000, 80)}),
        Scenario("S7", "20,000 connections, 5 messages to all", {
            "scenario": "scale", "receivers": n(20_000, 30), "window": 1,
            "messages": 5, "seconds": 60, "drainSeconds": 30}),
    ]  # fmt: skip


# Which scenarios each target runs: Redis targets test the shared path.
SINGLE = ["S1", "S2", "S3", "S4", "S5", "S6", "S1-100", "S1-5000",
          "S4-1000", "S4-10000"]  # fmt: skip
SHARED = ["S1", "S3", "S5-256", "S6"]
# The scale row (S7) only for sanic-chat and its ceiling, to bound the
# full run's time.
SCALE = [*SINGLE, "S7"]
# File descriptors a server or the load generator needs besides its
# connections (about 20 at rest), and local ports left for others.
FD_HEADROOM = 100


@dataclass
class Target:
    """A server under test: how to start it and which dialect it speaks."""

    name: str
    protocol: str
    processes: int = 1
    redis: bool = False
    runs: list[str] = field(default_factory=lambda: SINGLE)
    asgi: bool = False
    cluster: bool = False
    script: str = "bare_server.py"
    token: bool = True  # chat clients send a JWT (False: guests)

    def commands(
        self, ports: list[int], redis_url: str | None
    ) -> list[list[str]]:
        py = sys.executable
        cmds = []
        for port in ports:
            if self.protocol == "chat" and self.asgi:
                cmds.append(
                    [
                        py,
                        "-m",
                        "uvicorn",
                        "example_app.asgi:app",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                    ]
                )
            elif self.protocol == "chat":
                cmds.append([py, "-m", "example_app", "--port", str(port)])
            elif self.protocol == "bare":
                cmds.append([py, str(BENCH / self.script), str(port)])
            else:
                cmd = [py, str(BENCH / "socketio_server.py"), str(port)]
                if redis_url:
                    cmd += ["--redis", redis_url]
                cmds.append(cmd)
        return cmds

    def env(self, redis_url: str | None) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.protocol == "chat":
            env.update(
                SANIC_CHAT_JWT_SECRET=SECRET,
                # The benchmark's senders are trusted publishers.
                SANIC_CHAT_RATE_LIMIT="1000000",
                SANIC_CHAT_RATE_BURST="1000000",
            )
            if redis_url:
                env["SANIC_CHAT_BROADCASTER_URL"] = redis_url
        return env


TARGETS = {
    t.name: t
    for t in [
        Target("sanic-chat", "chat", runs=SCALE),
        Target("bare", "bare", runs=SCALE),
        Target("socketio", "socketio"),
        Target("sanic-chat-redis", "chat", 2, True, SHARED),
        Target("socketio-redis", "socketio", 2, True, SHARED),
        Target("sanic-chat-cluster", "chat", 2, True, SHARED, cluster=True),
        # One worker on Redis: with the two-worker S6, what one more
        # subscribed worker costs per message.
        Target("sanic-chat-redis-1", "chat", 1, True, ["S6"]),
        Target(
            "sanic-chat-uvicorn", "chat", runs=["S1", "S4", "S5"], asgi=True
        ),
        # Sanic's pipeline and the fast upgrade, no chat: the floor under
        # sanic-chat's connection setup and idle memory.
        Target(
            "sanic-floor", "bare", runs=["S4", "S5"], script="floor_server.py"
        ),
    ]
}


RATIOS = [
    ("sanic-chat", "bare"),
    ("sanic-chat", "socketio"),
    ("sanic-chat-redis", "socketio-redis"),
    ("sanic-chat-cluster", "sanic-chat-redis"),
    ("sanic-floor", "bare"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def die_with_parent() -> None:
    """In a child before exec: be killed (SIGKILL) if run.py dies.

    So that no server, Redis or load generator outlives an interrupted
    or killed run (Linux's ``PR_SET_PDEATHSIG``; survives ``exec``).
    """
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def make_room(connections: int) -> tuple[int, list[str]]:
    """Make room for ``connections`` loopback connections to one port.

    Raises this process's open-file limit, which the servers and the load
    generator inherit, to the connections plus ``FD_HEADROOM`` (the hard
    limit too when allowed: CAP_SYS_RESOURCE). Returns how many
    connections fit and, when fewer than asked, why: the open-file limit
    or the ephemeral port range (sockets in TIME_WAIT from earlier runs
    do not count: they hold their ports towards another server port, each
    run's server getting a fresh one). A run then measures fewer and says
    so, rather than failing or shrinking silently.
    """
    need = connections + FD_HEADROOM
    fits, why = connections, []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            fits = min(fits, hard - FD_HEADROOM)
            why.append(
                f"open files limited to {hard} a process (hard limit; "
                "raising it needs CAP_SYS_RESOURCE)"
            )
    with contextlib.suppress(OSError):
        range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
        low, high = map(int, range_file.read_text().split())
        if high - low + 1 < need:
            fits = min(fits, high - low + 1 - FD_HEADROOM)
            why.append(
                f"{high - low + 1} ephemeral ports ({low}-{high}; widen "
                "net.ipv4.ip_local_port_range)"
            )
    return fits, why


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free port, pinned with the servers."""
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, "redis-server", "--port", str(port),
         "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def redis_cluster(primaries: int = 3) -> Iterator[str]:
    """A throwaway Redis Cluster of ``primaries`` nodes, no replicas.

    Every node gets a free client port and a free cluster-bus port
    (``cluster-port``, Redis 7), its files in a temporary directory, and
    is pinned with the servers; ``redis-cli --cluster create`` splits the
    slots evenly. Yields a ``redis+cluster://`` URL naming every node.
    """
    ports = [free_port() for _ in range(primaries)]
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        procs = [
            subprocess.Popen(
                cluster_node(port, tmp),
                stdout=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            for port in ports
        ]
        try:
            for port, proc in zip(ports, procs, strict=True):
                wait_port(port, proc)
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{p}" for p in ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, timeout=30,
            )  # fmt: skip
            wait_cluster_ok(ports)
            nodes = ",".join(f"127.0.0.1:{p}" for p in ports)
            yield f"redis+cluster://{nodes}/"
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)


def cluster_node(port: int, tmp: str) -> list[str]:
    """The command line of one pinned, disposable cluster node."""
    return ["taskset", "-c", SERVER_CPU, "redis-server",
            "--port", str(port), "--cluster-port", str(free_port()),
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",
            "--dir", tmp, "--save", "", "--appendonly", "no",
            "--bind", "127.0.0.1"]  # fmt: skip


def wait_cluster_ok(ports: list[int]) -> None:
    """Wait until every node reports ``cluster_state:ok``."""
    deadline = time.monotonic() + 30
    for port in ports:
        while True:
            info = subprocess.run(
                ["redis-cli", "-p", str(port), "CLUSTER", "INFO"],
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            if "cluster_state:ok" in info:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {port} not ok: {info}")
            time.sleep(0.1)


@contextlib.contextmanager
def servers(
    target: Target, redis_url: str | None
) -> Iterator[tuple[list[int], list[subprocess.Popen[bytes]]]]:
    ports = [free_port() for _ in range(target.processes)]
    procs = [
        subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *cmd],
            cwd=ROOT,
            env=target.env(redis_url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        for cmd in target.commands(ports, redis_url)
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_port(port, proc)
        settle([p.pid for p in procs])
        yield ports, procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def settle(
    pids: list[int], quiet: float = 0.005, within: float = 10.0
) -> None:
    """Wait until the servers' start-up work is over: no measured phase
    may pay for it.

    A listening port is not a started server: Sanic binds its socket
    before its start-up listeners run, and the example app's (the chat's
    start-up, the collector's freeze) took 0.3-0.5 s more on this
    machine, which the first storm of a repeat used to pay. Settled means
    the servers used less than ``quiet`` seconds of CPU in 0.2 s, twice
    in a row (at most ``within`` seconds).
    """
    deadline = time.monotonic() + within
    last = sum(map(cpu_seconds, pids))
    calm = 0
    while calm < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = sum(map(cpu_seconds, pids))
        calm = calm + 1 if now - last < quiet else 0
        last = now
    if calm < 2:
        print(f"servers {pids} still busy after {within:.0f} s of "
              "start-up: measuring anyway", flush=True)  # fmt: skip


def run_once(
    target: Target, scenario: Scenario, redis_url: str | None
) -> dict[str, Any]:
    """Start fresh servers, drive one scenario, return its figures."""
    spec = scenario.spec
    senders = spec.get("senders", 1)
    wanted = spec["receivers"] + senders
    fits, why = make_room(wanted)
    limited = None
    if fits < wanted:
        spec = {**spec, "receivers": fits - senders}
        limited = f"{fits} of {wanted} connections: {'; '.join(why)}"
        print(f"{target.name} {scenario.name}: {limited}", flush=True)
    with servers(target, redis_url) as (ports, procs):
        pids = [p.pid for p in procs]
        base_rss = sum(rss_kib(pid) for pid in pids)
        spec = {
            **spec,
            "protocol": target.protocol,
            "urls": [f"ws://127.0.0.1:{p}" for p in ports],
            "secret": SECRET
            if target.protocol == "chat" and target.token
            else None,
        }
        gen = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, "node", str(BENCH / "loadgen.mjs"),
             json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        try:
            result = follow(gen, pids, base_rss)
            gen.wait(30)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
    if limited:
        result["limited"] = limited
    if "error" in result:
        raise RuntimeError(f"{target.name} {scenario.name}: {result['error']}")
    return result


def follow(
    gen: subprocess.Popen[str], pids: list[int], base_rss: int
) -> dict[str, Any]:
    """Read the load generator's events; measure the servers at each."""
    assert gen.stdout is not None and gen.stdin is not None
    result: dict[str, Any] = {}
    started = (0.0, 0.0)
    for line in gen.stdout:
        event = json.loads(line)
        kind = event.pop("event")
        if kind == "start":
            started = (time.monotonic(), sum(map(cpu_seconds, pids)))
        elif kind == "connected":
            time.sleep(2)  # let buffers and the allocator settle
            idle = sum(rss_kib(pid) for pid in pids)
            conns = max(event["connected"], 1)
            result["rss_per_conn_kib"] = (idle - base_rss) / conns
            result.update(event)
            gen.stdin.write("done\n")
            gen.stdin.flush()
        elif kind == "result":
            if started[0]:
                elapsed = time.monotonic() - started[0]
                cpu = sum(map(cpu_seconds, pids)) - started[1]
                result["server_cpu"] = cpu / elapsed
                if event.get("connected"):
                    # The servers' CPU per connection set up: steadier
                    # than a rate on a shared machine.
                    result["server_us_per_conn"] = (
                        cpu * 1e6 / event["connected"]
                    )
            result.update(event)
    return result


METRICS = {  # scenario kind -> (metric, label, higher is better)
    "fanout": [("deliveries_per_s", "deliveries/s", True),
               ("p99_ms", "p99 ms", False), ("lost", "lost", False),
               ("server_cpu", "server CPU", True),
               ("client_cpu", "client CPU", False)],
    "rate": [("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False),
             ("max_ms", "max ms", False), ("lost", "lost", False),
             ("rooms_out_of_order", "rooms out of order", False),
             ("deliveries_per_s", "deliveries/s", True),
             ("server_cpu", "server CPU", False)],
    "idle": [("rss_per_conn_kib", "KiB per connection", False),
             ("connect_failures", "failures", False)],
    "storm": [("connections_per_s", "connections/s", True),
              ("server_us_per_conn", "server µs per connection", False),
              ("connect_failures", "failures", False),
              ("client_cpu", "client CPU", False)],
    "scale": [("connected", "connected", True),
              ("connect_failures", "failures", False),
              ("connections_per_s", "connections/s", True),
              ("connect_client_cpu", "client CPU (connecting)", False),
              ("rss_per_conn_kib", "KiB per connection", False),
              ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False),
              ("max_ms", "max ms", False),
              ("deliveries", "deliveries", True), ("lost", "lost", False)],
}  # fmt: skip


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


# Metrics that count things: shown without a fraction.
COUNTS = {"connected", "deliveries", "lost", "connect_failures",
          "rooms_out_of_order"}  # fmt: skip


def fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric in COUNTS and float(value).is_integer():
        return f"{value:,.0f}"
    if metric.endswith("cpu"):
        return f"{value * 100:.0f} %"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def machine() -> dict[str, str]:
    def version(mod: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(mod)
        except PackageNotFoundError:
            return "-"

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    node = subprocess.run(
        ["node", "--version"], capture_output=True, text=True
    ).stdout.strip()
    redis = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2:3]
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "node": node,
        "redis-server": "".join(redis),
        **{
            m: version(m)
            for m in [
                "sanic-chat",
                "sanic",
                "websockets",
                "uvloop",
                "python-socketio",
                "aiohttp",
                "redis",
                "hiredis",
            ]
        },
    }


def table(
    results: dict[str, Any], names: list[str], order: list[Scenario]
) -> str:
    lines = []
    cols = [t for t in TARGETS if t in names]
    pairs = [(a, b) for a, b in RATIOS if a in cols and b in cols]
    header = ["scenario", "metric", *cols, *(f"{a} / {b}" for a, b in pairs)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for sc in order:
        rows = results.get(sc.name)
        if not rows:
            continue
        for metric, label, _ in METRICS[sc.spec["scenario"]]:
            cells = [sc.name, label]
            med: dict[str, float] = {}
            for t in cols:
                s = rows.get(t, {}).get(metric)
                if s is None:
                    cells.append("")
                    continue
                med[t] = s["median"]
                spread = (
                    f" ({fmt(s['min'], metric)}-{fmt(s['max'], metric)})"
                    if s["min"] != s["max"]
                    else ""
                )
                cells.append(fmt(s["median"], metric) + spread)
            for a, b in pairs:
                x, y = med.get(a), med.get(b)
                cells.append(f"{x / y:.2f}x" if x is not None and y else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    colors = {"sanic-chat": "#d9534f", "bare": "#777777",
              "socketio": "#337ab7", "sanic-chat-redis": "#f0ad4e",
              "socketio-redis": "#5bc0de",
              "sanic-chat-uvicorn": "#9b59b6",
              "sanic-chat-cluster": "#5cb85c",
              "sanic-floor": "#bbbbbb"}  # fmt: skip

    def bars(ax: Any, scenario: str, metric: str, title: str) -> None:
        rows = results.get(scenario, {})
        names = [t for t in TARGETS if metric in rows.get(t, {})]
        meds = [rows[t][metric]["median"] for t in names]
        errs = [
            [
                m - rows[t][metric]["min"]
                for t, m in zip(names, meds, strict=True)
            ],
            [
                rows[t][metric]["max"] - m
                for t, m in zip(names, meds, strict=True)
            ],
        ]
        ax.bar(names, meds, yerr=errs, capsize=4,
               color=[colors[t] for t in names])  # fmt: skip
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)

    def curve(ax: Any, points: list[tuple[int, str]], metric: str,
              title: str, xlabel: str) -> None:  # fmt: skip
        for t in TARGETS:
            xs, ys = [], []
            for x, scenario in points:
                s = results.get(scenario, {}).get(t, {}).get(metric)
                if s:
                    xs.append(x)
                    ys.append(s["median"])
            if xs:
                ax.plot(xs, ys, marker="o", label=t, color=colors[t])
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend()

    bars(axes[0][0], "S1", "deliveries_per_s", "S1 fan-out: deliveries/s")
    curve(
        axes[0][1],
        [(100, "S1-100"), (1000, "S1"), (5000, "S1-5000")],
        "deliveries_per_s",
        "Fan-out scaling: deliveries/s",
        "receivers",
    )
    curve(
        axes[1][0],
        [(1000, "S4-1000"), (5000, "S4"), (10000, "S4-10000")],
        "rss_per_conn_kib",
        "Memory: KiB per idle connection",
        "connections",
    )
    bars(
        axes[1][1],
        "S5",
        "connections_per_s",
        "S5 connect storm: connections/s",
    )
    fig.suptitle("sanic-chat vs websockets.broadcast() vs python-socketio "
                 "(medians, bars: min-max)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--only", default="", help="scenarios, e.g. S1,S4")
    parser.add_argument("--chart", type=Path, default=None, help="PNG path")
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results" / "latest.json"
    )
    args = parser.parse_args()
    for tool in ("node", "taskset", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required (see docs/benchmarks.md)")
    names = [t for t in args.targets.split(",") if t]
    only = set(filter(None, args.only.split(",")))
    order = [s for s in scenarios(args.smoke) if not only or s.name in only]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with contextlib.ExitStack() as stack:
        # Each Redis target gets its own server (or cluster), up for the
        # whole run: the targets take turns within every repeat.
        redis_urls: dict[str, str | None] = {}
        for name in names:
            target = TARGETS[name]
            if target.redis and any(sc.name in target.runs for sc in order):
                redis_urls[name] = stack.enter_context(
                    redis_cluster() if target.cluster else redis_server()
                )
        # Scenario by scenario, repeat by repeat, every target in turn
        # (A B A B ..., not A A B B): a machine that slows down or speeds
        # up during the run (a shared VM does) then weighs on every
        # target alike, not on whichever ran in that stretch.
        for sc in order:
            for i in range(args.repeat):
                for name in names:
                    target = TARGETS[name]
                    if sc.name not in target.runs:
                        continue
                    r = run_once(target, sc, redis_urls.get(name))
                    raw.setdefault(sc.name, {}).setdefault(name, []).append(r)
                    shown = {m: fmt(r.get(m), m) for m, _, _ in
                             METRICS[sc.spec["scenario"]]}  # fmt: skip
                    print(
                        f"{name:>17} {sc.name:<8} #{i + 1}: {shown}",
                        flush=True,
                    )
    results: dict[str, Any] = {
        sc: {
            t: {
                m: summarize([r[m] for r in runs if r.get(m) is not None])
                for m, _, _ in METRICS[
                    next(s for s in order if s.name == sc).spec["scenario"]
                ]
                if any(r.get(m) is not None for r in runs)
            }
            for t, runs in by_target.items()
        }
        for sc, by_target in raw.items()
    }
    report = {"machine": machine(), "argv": sys.argv[1:], "results": results,
              "runs": raw}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print()
    print(table(results, names, order))
    for sc, by_target in raw.items():
        for t, runs in by_target.items():
            for note in sorted({r["limited"] for r in runs if "limited" in r}):
                print(f"\n{sc} {t}: measured {note}")
    if args.chart:
        chart(results, args.chart)
        print(f"\nchart: {args.chart}")


if __name__ == "__main__":
    main()
