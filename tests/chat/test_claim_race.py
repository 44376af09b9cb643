"""Claiming is race-safe: two agents at once, exactly one wins, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("race_claim.py")
ROOT = SCRIPT.parents[2]


def _race(database_url: str, data_dir: Path) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir), "LOG_LEVEL": "warning"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_one_winner(outcome: dict) -> None:
    results = outcome["results"]
    winners = [name for name, result in results.items() if result == "won"]
    losers = [name for name, result in results.items() if result.startswith("conflict")]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert "already" in results[losers[0]]
    assert outcome["claimed_by"] == winners[0]
    assert outcome["assignee"] == winners[0]
    assert outcome["conversation_status"] == "with_agent"
    assert outcome["joined_notices"] == 1


@pytest.mark.integration
def test_two_agents_claiming_at_once_on_sqlite(tmp_path):
    _assert_one_winner(_race(f"sqlite:///{tmp_path / 'race.sqlite3'}", tmp_path))


@pytest.mark.integration
def test_two_agents_claiming_at_once_on_postgresql(tmp_path, postgres_url):
    _assert_one_winner(_race(postgres_url, tmp_path))
