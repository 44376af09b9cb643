"""Ops' knowledge pages: branded chrome, help on formats when adding a source, live sync status, readable results."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from knowledge import parsers
from knowledge.models import KnowledgeBase, Source

pytestmark = pytest.mark.django_db


def test_admin_pages_name_the_product_not_django(ops_client, kb):
    for url in (reverse("admin:index"), reverse("admin:knowledge_source_changelist")):
        page = ops_client.get(url).content.decode()
        assert "Support bot — admin" in page
        assert "Django administration" not in page
        assert "Django site admin" not in page
    page = ops_client.get(reverse("admin:knowledge_source_changelist")).content.decode()
    assert "<h1>Sources</h1>" in page
    assert "Select source to change" not in page


def test_add_source_explains_formats_with_the_columns_the_parser_accepts(ops_client, kb, tmp_path: Path):
    page = ops_client.get(reverse("admin:knowledge_source_add")).content.decode()
    assert 'id="source-formats"' in page
    for extension in parsers.SUPPORTED_EXTENSIONS:
        assert extension in page
    for column in ("question", "pregunta", "answer", "respuesta", "faq_id", "lang", "link", "phrasings", "question_es"):
        assert f"<code>{column}</code>" in page
    # The example header on the page is one the parser takes.
    sample = tmp_path / "faq.csv"
    sample.write_text("id,question,answer,language,url,phrasings\n1,How?,Like this.,en,,other|wording\n")
    result = parsers.parse_file(sample, max_bytes=10_000)
    assert [item.question for item in result.items] == ["How?"]
    assert not result.issues


def test_the_only_knowledge_base_is_preselected(ops_client, kb):
    page = ops_client.get(reverse("admin:knowledge_source_add")).content.decode()
    assert f'<option value="{kb.pk}" selected>' in page

    KnowledgeBase.objects.create(slug="other", name="Other")
    page = ops_client.get(reverse("admin:knowledge_source_add")).content.decode()
    assert '<option value="" selected>' in page.split('name="knowledge_base"')[1].split("</select>")[0]


def test_sync_status_view_reports_progress_for_the_polling_pages(ops_client, kb):
    running = Source.objects.create(
        knowledge_base=kb, name="faq.csv", status=Source.Status.RUNNING, items_done=3, items_total=10
    )
    done = Source.objects.create(knowledge_base=kb, name="guide.pdf", status=Source.Status.OK)
    data = ops_client.get(reverse("admin:knowledge_source_status"), {"id": [running.pk, done.pk]}).json()
    by_id = {source["id"]: source for source in data["sources"]}
    assert by_id[running.pk] == {
        "id": running.pk,
        "status": "running",
        "label": "Syncing",
        "running": True,
        "progress": "3/10",
    }
    assert by_id[done.pk]["running"] is False

    page = ops_client.get(reverse("admin:knowledge_source_changelist")).content.decode()
    assert reverse("admin:knowledge_source_status") in page  # the polling script
    assert f'data-sync-status="{running.pk}" data-state="running"' in page


def test_status_view_needs_staff(client, kb):
    response = client.get(reverse("admin:knowledge_source_status"))
    assert response.status_code == 302  # to the login page


def test_the_result_column_shows_every_count_and_the_problems_count(ops_client, kb):
    Source.objects.create(
        knowledge_base=kb,
        name="faq.csv",
        status=Source.Status.PARTIAL,
        added=12,
        held=2,
        issues=[{"location": "faq.csv line 4", "message": "missing answer; skipped"}],
    )
    page = ops_client.get(reverse("admin:knowledge_source_changelist")).content.decode()
    assert "12 added, 0 updated, 0 unchanged, 0 removed, 2 held for review" in page
    assert "1 problem (open the source to read them)" in page
    assert 'class="field-result"' in page


def test_404_and_403_pages_are_branded_and_link_back(client, settings, django_user_model):
    settings.DEBUG = False
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    text = page.content.decode()
    assert "We couldn't find that page" in text
    assert "Go back" in text
    assert "<style>" in text

    user = django_user_model.objects.create_user("agent", "a@example.com", "x", is_staff=True)
    client.force_login(user)
    page = client.get(reverse("admin:knowledge_source_add"))
    assert page.status_code == 403
    text = page.content.decode()
    assert "You don't have access to this page" in text
    assert 'href="/admin/"' in text


def test_top_unanswered_lists_the_questions_not_the_outbursts_or_person_requests(kb):
    from datetime import timedelta

    from django.utils import timezone

    from chat import metrics
    from chat.models import Conversation, Message, Ticket

    def ticket(reason: str, *texts: str) -> None:
        conversation = Conversation.objects.create(knowledge_base=kb, language="en")
        messages = [Message.objects.create(conversation=conversation, role="customer", text=t) for t in texts]
        Ticket.objects.create(conversation=conversation, reason=reason, trigger_message=messages[-1])

    ticket("out_of_scope", "Do you ship to Mars?")
    ticket("repeated_failure", "Can I pay with bitcoin?", "This bot is useless!!")  # the question, not the outburst
    ticket("low_confidence", "I'm fed up with this")  # nothing asked: left out
    ticket("human_request", "Let me talk to a person about my invoice")  # not an unanswered question
    ticket("frustration", "Third time I'm writing, incompetent people")

    found = [cluster["question"] for cluster in metrics.top_unanswered(timezone.now() - timedelta(days=1))]
    assert sorted(found) == ["Can I pay with bitcoin?", "Do you ship to Mars?"]


def test_escalations_by_reason_count_conversations_so_a_share_never_passes_100_percent(kb):
    from chat import metrics
    from chat.models import Conversation, Message, Ticket

    conversation = Conversation.objects.create(knowledge_base=kb, language="en")
    Message.objects.create(conversation=conversation, role="customer", text="a person please")
    for _ in range(2):  # escalated, handed back to the bot, escalated again
        Ticket.objects.create(conversation=conversation, reason="human_request")

    [row] = metrics.compute(7)["escalations_by_reason"]
    assert row["count"] == 2
    assert row["rate"] == 1.0
