"""Test support: throwaway servers (PostgreSQL, Redis, Orthanc), synthetic models, writers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the test servers listen on loopback only)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
