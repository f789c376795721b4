"""A free TCP port for a server a test starts.

Asking the kernel for port 0 returns a port from the ephemeral range, the same range every
outgoing connection (a Kafka or Redis client's) takes its local port from: between the choice and
the server's bind another connection can take it (CI failed once that way, "address already in
use"). So the port comes from below the ephemeral range, where the kernel never hands out ports on
its own, and away from the fixed ports the project's scripts use.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOW = 30000
"""Above the fixed ports of scripts/*.sh (9092-9093, 16501-16502, 19100-19210, 26379, 26501-26503,
29092-29093)."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, on any address, from below the ephemeral range."""
    high = max(LOW + 100, _ephemeral_low())
    for _ in range(200):
        port = random.randrange(LOW, high)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port between {LOW} and {high}")
