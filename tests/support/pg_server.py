"""A throwaway PostgreSQL server from Debian's ``postgresql`` package, for tests and the benchmark.

``initdb`` into a temporary directory, ``pg_ctl start`` on a free port on 127.0.0.1 only, trust
authentication (nothing but this machine can reach it), and ``stop()`` removes it all. The server
refuses to run as root, so under root it runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

log = logging.getLogger(__name__)

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (or no user to run them as) on this machine."""


class PostgresStartError(RuntimeError):
    """The binaries are there but the server did not start."""


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    candidates = []
    for bin_dir in Path("/").glob(BIN_GLOB.lstrip("/")):
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            version = re.findall(r"\d+", bin_dir.parent.name)
            candidates.append((tuple(int(v) for v in version), bin_dir))
    return max(candidates)[1] if candidates else None


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the server: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise PostgresUnavailable(f"running as root and there is no {SERVER_USER!r} user to run the server") from exc


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    account: pwd.struct_passwd | None
    _databases: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "LC_ALL": "C", "PGTZ": "UTC"}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.root,
            env=env,
            check=check,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            user=self.account.pw_uid if self.account else None,
            group=self.account.pw_gid if self.account else None,
            timeout=START_TIMEOUT_S,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "reviews") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVER_USER, name)
        return self.url(name)

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SERVER_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
        done = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            check=False,
        )
        if done.returncode != 0:
            log_file = self.root / "server.log"
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.is_file() else ""
            raise PostgresStartError(f"pg_ctl start failed ({done.returncode}): {done.stdout.strip()}\n{tail}")
        log.info("PostgreSQL %s started on 127.0.0.1:%d in %s", self.bin_dir.parent.name, self.port, self.root)

    def stop(self) -> None:
        """Stop the server and delete its files. Immediate mode skips the shutdown checkpoint (seconds
        of fsync for data about to be deleted)."""
        try:
            if (self.data_dir / "postmaster.pid").is_file():
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data_dir), check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """Start a server; raises PostgresUnavailable without binaries, PostgresStartError if it fails."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(f"no PostgreSQL server binaries under {BIN_GLOB} (apt-get install postgresql)")
    account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="review-pg-"))
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port(), account=account)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()
