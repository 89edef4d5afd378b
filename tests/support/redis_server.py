"""A throwaway Redis server from Debian's ``redis-server`` package, for tests and the benchmark: on a
free port on 127.0.0.1 only, no persistence, in a temporary directory removed by ``stop()``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

START_TIMEOUT_S = 30


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` binary on this machine."""


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen
    folder: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start() -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server not found (apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="review-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=(folder / "redis.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = (folder / "redis.log").read_text()
            process.kill()
            raise RuntimeError(f"redis-server did not start: {log[-2000:]}")
        time.sleep(0.1)
    return RedisServer(url=f"redis://127.0.0.1:{port}/0", process=process, folder=folder)


@contextmanager
def running() -> Iterator[RedisServer]:
    server = start()
    try:
        yield server
    finally:
        server.stop()
