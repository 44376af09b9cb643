"""Knowledge changed by another process while customers chat: web, worker and commands share one Chroma server.

As `make run` runs the product: uvicorn and a Celery worker as separate processes on one data folder
(SQLite, the filesystem broker), the Chroma server as a third process, every process its client.
A FAQ arrives through the worker (as the admin's upload does) and through `manage.py ingest` in yet
another process while a customer chats over HTTP: no turn fails, and the new entries are answered
on the next message. (Without a server, a second process that would open the folder is refused:
tests/support/test_health.py.)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.browser.server import manage
from tests.integration.product import Customer, Turn, ask, celery_worker, chroma_server, product_env, shell, uvicorn

pytestmark = pytest.mark.integration

TINY_FAQ = Path(__file__).parents[1] / "knowledge" / "data" / "tiny_faq.jsonl"
CHATTED = ["How much does shipping cost?", "How do I return a product?", "When is customer service open?"]
BY_WORKER = {
    "id": "gift",
    "question": "Can you wrap my order as a present?",
    "answer": "Yes: tick gift wrapping at checkout and add a card with your own words.",
}
BY_COMMAND = {
    "id": "pay",
    "question": "Which payment methods do you accept?",
    "answer": "We accept Visa, Mastercard, PayPal and bank transfer.",
}

UPLOAD = """
from django.db import transaction
from knowledge.admin import enqueue_sync
from knowledge.models import KnowledgeBase, Source
with transaction.atomic():
    source = Source.objects.create(knowledge_base=KnowledgeBase.objects.get(slug="shop"), name="gift.jsonl",
                                   kind=Source.Kind.FILE, location={location!r})
    enqueue_sync(source)
"""


def write_faq(path: Path, *rows: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def poll(db: Path, query: str, timeout: float = 120) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as connection:
            row = connection.execute(query).fetchone()
        if row is not None:
            return row
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for: {query}")


class Chatter(threading.Thread):
    """A customer who keeps asking covered questions until told to stop."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.turns = base, 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                customer = Customer(self.base)  # a new one each round: asking again counts as a failed answer
                try:
                    for text in CHATTED:
                        turn = customer.say(text)
                        self.turns += 1
                        if not _answered(turn):
                            self.failures.append(f"{text!r}: HTTP {turn.status_code} {turn.events}")
                finally:
                    customer.close()
        except Exception as exc:  # the assertion in the test reports it
            self.failures.append(f"{type(exc).__name__}: {exc}")


def _answered(turn: Turn, text: str = "") -> bool:
    bot = [reply for reply in turn.replies if reply["role"] == "bot"]
    return turn.status_code == 200 and not turn.errors and bool(bot) and text in bot[-1]["text"]


def test_worker_and_command_ingest_while_customers_chat(tmp_path):
    data = tmp_path / "data"
    db = data / "db.sqlite3"
    with chroma_server(data / "chroma", tmp_path / "chroma.log") as chroma_url:
        # As scripts/run.sh does: web and worker are told the URL; commands in another shell find it in chroma.url.
        (data / "chroma.url").write_text(chroma_url + "\n", encoding="utf-8")
        env = product_env(data)
        served = product_env(data, CHROMA_URL=chroma_url)
        manage(env, "migrate", "--noinput")
        manage(env, "ingest", str(TINY_FAQ), "--kb", "shop")
        with uvicorn(served, tmp_path / "web.log") as base, celery_worker(served, tmp_path / "worker.log"):
            chatter = Chatter(base)
            chatter.start()
            try:
                while chatter.turns < 3 and chatter.is_alive():  # the web process has read the index
                    time.sleep(0.2)

                shell(env, UPLOAD.format(location=str(write_faq(tmp_path / "gift.jsonl", BY_WORKER))))
                output = manage(env, "ingest", str(write_faq(tmp_path / "pay.jsonl", BY_COMMAND)), "--kb", "shop")
                assert "added 1" in output
                status, error = poll(
                    db,
                    "SELECT status, error FROM knowledge_source WHERE name = 'gift.jsonl' "
                    "AND status IN ('ok', 'partial', 'failed')",
                )
                assert status == "ok", error

                turns_after_ingest = chatter.turns
                while chatter.turns < turns_after_ingest + 3 and chatter.is_alive():
                    time.sleep(0.2)
                by_worker = ask(base, BY_WORKER["question"])
                by_command = ask(base, BY_COMMAND["question"])
            finally:
                chatter.done.set()
                chatter.join(timeout=60)

    assert chatter.failures == []
    assert chatter.turns >= 6
    assert _answered(by_worker, "gift wrapping"), by_worker.events
    assert _answered(by_command, "Mastercard"), by_command.events
    with sqlite3.connect(db) as connection:
        reasons = [row[0] for row in connection.execute("SELECT reason FROM chat_ticket")]
    assert "system_error" not in reasons
