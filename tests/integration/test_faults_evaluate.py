"""`manage.py evaluate` runs on a throw-away database of its own: while it runs, another process writes to the
live database at once (no lock held for the evaluation's minutes), and afterwards the live database has no new rows.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.server import manage
from tests.integration.product import REPO, product_env

pytestmark = pytest.mark.integration

DATA = REPO / "tests" / "learning" / "data"


def row_counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        count = 'SELECT count(*) FROM "{}"'  # the database's own table names
        return {table: connection.execute(count.format(table)).fetchone()[0] for table in tables}


def test_evaluate_never_touches_the_live_database(tmp_path):
    db = tmp_path / "live.sqlite3"
    env = product_env(tmp_path / "data", DATABASE_URL=f"sqlite:///{db}")
    manage(env, "migrate", "--no-input")
    before = row_counts(db)
    figures = tmp_path / "figures.json"
    command = [sys.executable, "manage.py", "evaluate", "--faq", str(DATA / "faq.jsonl"),
               "--queries", str(DATA / "queries.jsonl"), "--json", str(figures)]  # fmt: skip
    log = tmp_path / "evaluate.log"
    with log.open("w") as out:
        evaluation = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 300
            while "indexed " not in log.read_text() and time.monotonic() < deadline:  # mid-run: index built
                assert evaluation.poll() is None, log.read_text()
                time.sleep(0.2)
            assert evaluation.poll() is None, "evaluate ended before the test could write meanwhile"

            started = time.monotonic()
            with contextlib.closing(sqlite3.connect(db, timeout=2, isolation_level=None)) as writer:
                writer.execute("BEGIN IMMEDIATE")  # fails after 2 s if evaluate held the write lock
                writer.execute("INSERT INTO auth_group (name) VALUES ('written while evaluate ran')")
                writer.execute("COMMIT")
            assert time.monotonic() - started < 1.5

            assert evaluation.wait(timeout=600) == 0, log.read_text()[-3000:]
        finally:
            if evaluation.poll() is None:
                evaluation.kill()
                evaluation.wait()

    after = row_counts(db)
    assert after == {**before, "auth_group": before["auth_group"] + 1}
    assert figures.is_file()
    assert log.read_text().strip().splitlines()[-1].startswith("SUMMARY ")
