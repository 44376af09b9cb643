"""The product as separate processes, as `make run` and docker-compose run it: a Chroma server, uvicorn, a
Celery worker, and `manage.py` commands, all on loopback, sharing one data folder; and a widget client.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.browser.server import free_port, manage, wait_healthy
from tests.processes import stop

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def product_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "support.settings",
        "DATA_DIR": str(data_dir),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "warning",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "BUSINESS_HOURS": "always",
        "CHAT_RATE_LIMIT_PER_MINUTE": "10000",
        "CHAT_IP_RATE_LIMIT_PER_MINUTE": "100000",
        "EMBEDDING_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "CHROMA_URL", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
        if name not in extra:
            env.pop(name, None)
    return env


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} is not listening on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def chroma_server(path: Path, log: Path) -> Iterator[str]:
    """Chroma's own server (shipped in the chromadb package), serving ``path`` on a free loopback port.

    Like scripts/run.sh, it holds the folder's lock while it runs: a process that opened the folder on disk
    instead of asking the server would be refused.
    """
    import fcntl

    from knowledge.vectorstore import lock_file

    port = free_port()
    env = {**os.environ, "RUST_LOG": "warn"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_file(path).open("a+") as lock, log.open("wb") as out:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        lock.write("the test's Chroma server")
        lock.flush()
        process = subprocess.Popen(
            [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, process, "the Chroma server")
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)


@contextlib.contextmanager
def uvicorn(env: dict[str, str], log: Path, workers: int = 1) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "support.asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log", "--workers", str(workers)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            try:
                wait_healthy(base, process, timeout=120)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n--- uvicorn log ---\n{log.read_text(errors='replace')[-4000:]}") from exc
            yield base
        finally:
            stop(process)


@contextlib.contextmanager
def celery_worker(env: dict[str, str], log: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process (one at a time, solo pool); ``options`` are added to its command line."""
    command = [sys.executable, "-m", "celery", "-A", "support", "worker", "--pool", "solo", "--concurrency", "1",
               "--loglevel", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
               *options]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            stop(process, timeout=15)


def shell(env: dict[str, str], code: str, timeout: float = 300) -> str:
    return manage(env, "shell", "-c", code, timeout=timeout)


@dataclass
class Turn:
    status_code: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def replies(self) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == "message"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == "error"]


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.split("\n\n"):
        name, data = "", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        if name:
            events.append((name, json.loads(data or "{}")))
    return events


class Customer:
    """One widget: starts a conversation, then posts messages and reads each turn's SSE stream."""

    def __init__(self, base: str, kb: str = "shop", language: str = "en", timeout: float = 60) -> None:
        self.http = httpx.Client(base_url=base, timeout=timeout)
        response = self.http.post("/api/conversations", json={"kb": kb, "language": language})
        response.raise_for_status()
        body = response.json()
        self.id, self.token = body["id"], body["token"]

    def say(self, text: str) -> Turn:
        response = self.http.post(
            f"/api/conversations/{self.id}/messages",
            json={"text": text},
            headers={"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"},
        )
        if response.status_code != 200:
            return Turn(response.status_code)
        return Turn(response.status_code, parse_sse(response.text))

    def close(self) -> None:
        self.http.close()


def ask(base: str, text: str, kb: str = "shop") -> Turn:
    """A new customer asks one question (a conversation that escalated stays with people)."""
    customer = Customer(base, kb)
    try:
        return customer.say(text)
    finally:
        customer.close()
