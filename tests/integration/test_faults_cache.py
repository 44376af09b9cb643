"""A Redis outage under the rate limiter (CACHE_URL) is not a chat outage: customers are answered and every message
is stored, the outage is logged once, /healthz says what is wrong, and the limits hold again once Redis is back."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from tests.browser.server import manage
from tests.integration.faults_fixtures import redis_server
from tests.integration.product import Customer, product_env, uvicorn

pytestmark = pytest.mark.integration

FAQ = "tests/learning/data/faq.jsonl"
LIMIT = 4  # messages per conversation and minute


def stored(db, text: str) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM chat_message WHERE text = ?", (text,)).fetchone()[0])


def health(base: str) -> int:
    return httpx.get(f"{base}/healthz", timeout=10).status_code


def test_a_redis_outage_is_not_a_chat_outage(tmp_path):
    db = tmp_path / "db.sqlite3"
    with redis_server(tmp_path / "redis") as redis:
        env = product_env(
            tmp_path / "data",
            DATABASE_URL=f"sqlite:///{db}",
            CACHE_URL=redis.url(1),
            CHAT_RATE_LIMIT_PER_MINUTE=str(LIMIT),
            LOG_LEVEL="info",
        )
        manage(env, "migrate", "--no-input")
        manage(env, "ingest", FAQ, "--kb", "shop")
        log = tmp_path / "web.log"
        with uvicorn(env, log) as base:
            before = Customer(base, "shop")
            assert before.say("How much is shipping?").status_code == 200

            redis.stop()
            statuses = []
            for n in range(3):  # new customers start conversations and write while the cache is down
                customer = Customer(base, "shop")
                statuses += [customer.say(f"outage question {n}").status_code for _ in range(2)]
                customer.close()
            statuses += [before.say("outage question from before").status_code for _ in range(LIMIT + 1)]
            assert statuses == [200] * len(statuses)  # not limited either: the limiter is off, not failing
            assert all(stored(db, f"outage question {n}") == 2 for n in range(3))
            assert stored(db, "outage question from before") == LIMIT + 1
            assert health(base) == 503  # and /healthz says so

            redis.start()
            deadline = time.monotonic() + 30
            while health(base) != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert health(base) == 200
            time.sleep(6)  # the limiter asks the cache again a few seconds after its last failure
            after = Customer(base, "shop")
            statuses = [after.say(f"after {n}").status_code for n in range(LIMIT + 1)]
            assert statuses == [200] * LIMIT + [429]  # the limits hold again
            before.close()
            after.close()
        text = log.read_text(errors="replace")
    assert text.count("cache unreachable: rate limits are off until it is back") == 1, text[-3000:]
    assert text.count("cache reachable again after") == 1
    assert "Traceback" not in text
