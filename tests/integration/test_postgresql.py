"""The web process on a real PostgreSQL: a bounded pool of connections, and a database restart it survives.

uvicorn runs against the suite's PostgreSQL server (tests/conftest.py), in a database of its own.
Many customers at once never hold more connections than the pool's size, and after `pg_ctl restart`
the next messages are answered (not handed over as a system error) without restarting web.
"""

from __future__ import annotations

import glob
import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.browser.server import manage
from tests.integration.product import Customer, Turn, product_env, uvicorn

pytestmark = pytest.mark.integration

TINY_FAQ = Path(__file__).parents[1] / "knowledge" / "data" / "tiny_faq.jsonl"
QUESTIONS = [
    ("How much does shipping cost?", "4.95"),
    ("How do I return a product?", "30 days"),
    ("When is customer service open?", "Monday to Friday"),
]
POOL = 3


def _restart(server_url: str) -> None:
    with psycopg.connect(server_url) as connection:
        data_directory = connection.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
    pg_ctl = os.path.join(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1], "pg_ctl")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    log = str(Path(data_directory).parent / "log")  # where the suite's fixture started it logging
    subprocess.run([*as_postgres, pg_ctl, "-D", data_directory, "-l", log, "-m", "fast", "-w", "restart"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip


def _answers(base: str, customers: int) -> list[str]:
    """``customers`` customers at once, each asking every question; the problems seen, if any."""

    def chat(_: int) -> list[str]:
        customer = Customer(base)
        try:
            problems = []
            for question, expected in QUESTIONS:
                turn = customer.say(question)
                if not _answered(turn, expected):
                    problems.append(f"{question!r}: HTTP {turn.status_code} {turn.events}")
            return problems
        finally:
            customer.close()

    with ThreadPoolExecutor(customers) as pool:
        return [problem for problems in pool.map(chat, range(customers)) for problem in problems]


def _answered(turn: Turn, expected: str) -> bool:
    bot = [reply for reply in turn.replies if reply["role"] == "bot"]
    return turn.status_code == 200 and not turn.errors and bool(bot) and expected in bot[-1]["text"]


class ConnectionWatch(threading.Thread):
    """The most connections to the database seen at once, sampled from pg_stat_activity, and what they were then
    (pid, client port, backend start, state, last query), so that a failure says where an extra one came from."""

    def __init__(self, server_url: str, database: str) -> None:
        super().__init__(daemon=True)
        self.server_url, self.database, self.most = server_url, database, 0
        self.at_most: list[tuple[object, ...]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            while not self.done.wait(0.05):
                rows = connection.execute(
                    "SELECT pid, client_port, backend_start, state, left(query, 80) FROM pg_stat_activity "
                    "WHERE datname = %s",
                    (self.database,),
                ).fetchall()
                if len(rows) > self.most:
                    self.most, self.at_most = len(rows), rows


def _watching(
    server_url: str, database: str, work: Callable[[], list[str]]
) -> tuple[list[str], int, list[tuple[object, ...]]]:
    watch = ConnectionWatch(server_url, database)
    watch.start()
    try:
        return work(), watch.most, watch.at_most
    finally:
        watch.done.set()
        watch.join()


def test_bounded_connections_and_a_database_restart_without_a_web_restart(
    tmp_path, postgres_url, postgres_database_url
):
    database_url = postgres_database_url
    database = urlsplit(database_url).path.lstrip("/")
    env = product_env(tmp_path / "data", DATABASE_URL=database_url, DATABASE_POOL_MAX_SIZE=str(POOL))
    manage(env, "migrate", "--noinput")
    manage(env, "ingest", str(TINY_FAQ), "--kb", "shop")

    with uvicorn(env, tmp_path / "web.log") as base:
        problems, most, connections = _watching(postgres_url, database, lambda: _answers(base, customers=12))
        assert problems == []
        assert 1 <= most <= POOL, connections  # twelve customers at once, never more connections than the pool holds

        _restart(postgres_url)  # every pooled connection is now dead

        started = time.monotonic()
        assert _answers(base, customers=4) == []  # the same web process, not restarted
        assert time.monotonic() - started < 60
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200

    with psycopg.connect(database_url) as connection:
        reasons = [row[0] for row in connection.execute("SELECT reason FROM chat_ticket")]
        turns = connection.execute("SELECT count(*) FROM chat_message WHERE role = 'bot'").fetchone()
    assert "system_error" not in reasons
    assert turns == (16 * len(QUESTIONS),)
