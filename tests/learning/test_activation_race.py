"""A retraining job's switch and ops' rollback at the same instant: one version live, the one ops chose, whichever
side gets there first, on SQLite and on PostgreSQL (where a row lock that missed the other side's new live version
left the rollback failing on the one-active-version constraint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("race_activation.py")
ROOT = SCRIPT.parents[2]

pytestmark = pytest.mark.integration


def _race(database_url: str, data_dir: Path, ordering: str) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir), "LOG_LEVEL": "warning"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), ordering], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_job_first(outcome: dict) -> None:
    # the job's check came first: it promotes v3, then ops' rollback (asked for later) puts v1 live over it
    assert outcome["job"] == {"saw": 2, "error": None}, outcome
    assert outcome["ops"] == {"error": None}, outcome
    assert outcome["live"] == [1], outcome


def _assert_ops_first(outcome: dict) -> None:
    # ops' rollback came first: the job sees v1 live, not the v2 it was judged against, and does not promote
    assert outcome["ops"] == {"error": None}, outcome
    assert outcome["job"] == {"saw": 1, "error": None}, outcome
    assert outcome["live"] == [1], outcome


@pytest.mark.parametrize("ordering", ["job-first", "ops-first"])
def test_switch_and_rollback_at_once_on_postgresql(tmp_path, postgres_database_url, ordering):
    outcome = _race(postgres_database_url, tmp_path, ordering)
    (_assert_job_first if ordering == "job-first" else _assert_ops_first)(outcome)


@pytest.mark.parametrize("ordering", ["job-first", "ops-first"])
def test_switch_and_rollback_at_once_on_sqlite(tmp_path, ordering):
    outcome = _race(f"sqlite:///{tmp_path / 'race.sqlite3'}", tmp_path, ordering)
    (_assert_job_first if ordering == "job-first" else _assert_ops_first)(outcome)
