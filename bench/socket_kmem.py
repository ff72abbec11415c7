"""Kernel memory per idle TCP socket, which a process's RSS does not show.

Opens ``--pairs`` loopback connections (each end a socket), sends a few
bytes each way so the sockets have been used, leaves them idle, and
divides the growth of the kernel's slab (``/proc/meminfo``) by the
number of sockets. S4 in ``bench/run.py`` measures the server process's
RSS per connection; this is what comes on top, per socket, with empty
buffers (full buffers are bounded by ``net.ipv4.tcp_wmem``/``tcp_rmem``).
Linux only; other processes on the machine add noise, so run it twice.

    python bench/socket_kmem.py                # 5,000 pairs
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import time
from pathlib import Path


def slab_kib() -> tuple[int, int]:
    """The kernel's ``Slab`` and ``SUnreclaim``, in KiB."""
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return fields["Slab"], fields["SUnreclaim"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < 2 * args.pairs + 100:
        raise SystemExit(f"open files limit {hard}: use fewer --pairs")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4096)
        address = server.getsockname()
        before = slab_kib()
        sockets = []
        for _ in range(args.pairs):
            client = socket.create_connection(address)
            accepted, _ = server.accept()
            client.sendall(b"x" * 200)
            accepted.recv(1024)
            accepted.sendall(b"y" * 200)
            client.recv(1024)
            sockets += [client, accepted]
        time.sleep(1)
        after = slab_kib()
        for sock in sockets:
            sock.close()
    count = len(sockets)
    print(json.dumps({
        "sockets": count,
        "slab_kib_per_socket": (after[0] - before[0]) / count,
        "unreclaimable_kib_per_socket": (after[1] - before[1]) / count,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
