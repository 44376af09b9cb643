"""What the fault tests do to the product's processes: a Redis they stop and start again, a Celery worker they
watch or kill, a SQLite write lock that keeps a task busy, and a poll of the database file."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.browser.server import free_port
from tests.integration.product import REPO, wait_for_port
from tests.processes import stop


class RedisServer:
    """A real redis-server on one loopback port, stopped and started again by the test (data kept on disk)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/system-deps.sh")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        # Append-only, as docker-compose.yml runs it: queued and unacknowledged messages survive a restart.
        command = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                   "--save", "", "--appendonly", "yes", "--appendfsync", "always"]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, "redis-server", timeout=15)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Worker:
    """`celery -A support worker` as docker-compose.yml runs it (prefork, 2 processes), logging to a file."""

    def __init__(self, env: dict[str, str], log: Path, pool: str = "prefork", concurrency: int = 2) -> None:
        command = [sys.executable, "-m", "celery", "-A", "support", "worker", "--pool", pool,
                   "--concurrency", str(concurrency), "--loglevel", "INFO",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
        self.log = log
        self._out = log.open("ab")
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 60, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text()[after:]:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited ({self.process.returncode}):\n{self.text()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"the worker never logged {needle!r}:\n{self.text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine does: nothing is acknowledged or put back."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            stop(self.process, timeout=15)
        self._out.close()


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path, pool: str = "prefork", concurrency: int = 2) -> Iterator[Worker]:
    running = Worker(env, log, pool, concurrency)
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Holds SQLite's write lock: any task that writes waits (and retries) until it is released."""
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def poll(db: Path, query: str, timeout: float = 60.0) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
            row = connection.execute(query).fetchone()
        if row is not None:
            return row
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for: {query}")


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
