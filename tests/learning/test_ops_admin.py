"""Ops' retraining pages: a visible "Retrain now", an empty list that says what to do, a readable read-only job page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from learning.models import RetrainingJob

pytestmark = pytest.mark.django_db


def test_an_empty_jobs_list_explains_retraining_and_offers_the_button(ops_client, kb):
    page = ops_client.get(reverse("admin:learning_retrainingjob_changelist")).content.decode()
    assert 'id="no-jobs"' in page
    assert "No retraining jobs yet." in page
    assert 'id="retrain-now"' in page
    assert "<h1>Retraining jobs</h1>" in page


def test_a_jobs_list_with_jobs_still_offers_the_button(ops_client, kb):
    RetrainingJob.objects.create(knowledge_base=kb, trigger="admin", status="promoted")
    page = ops_client.get(reverse("admin:learning_retrainingjob_changelist")).content.decode()
    assert 'id="no-jobs"' not in page
    assert 'id="result_list"' in page
    assert 'id="retrain-now"' in page
    assert f'<input type="hidden" name="knowledge_base" value="{kb.pk}">' in page
    assert page.index('id="retrain-now"') < page.index('id="result_list"')  # above the jobs, not after 50 rows


def test_retrain_now_button_queues_one_job_and_opens_it(ops_client, kb, django_capture_on_commit_callbacks):
    url = reverse("admin:learning_retrain_now")
    with django_capture_on_commit_callbacks() as callbacks:
        first = ops_client.post(url, {"knowledge_base": kb.pk})
        second = ops_client.post(url, {"knowledge_base": kb.pk})
    job = RetrainingJob.objects.get(knowledge_base=kb)
    assert first.url == second.url == reverse("admin:learning_retrainingjob_change", args=[job.pk])
    assert len(callbacks) == 1
    assert ops_client.get(url).status_code == 405


def test_retrain_now_needs_the_right_to_change_the_knowledge_base(client, django_user_model, kb):
    client.force_login(django_user_model.objects.create_user("agent", "a@example.com", "x", is_staff=True))
    assert client.post(reverse("admin:learning_retrain_now"), {"knowledge_base": kb.pk}).status_code == 403
    assert not RetrainingJob.objects.exists()


def test_the_knowledge_base_pages_show_a_retrain_button(ops_client, kb):
    for url in (
        reverse("admin:knowledge_knowledgebase_change", args=[kb.pk]),
        reverse("admin:knowledge_knowledgebase_changelist"),
    ):
        page = ops_client.get(url).content.decode()
        assert reverse("admin:learning_retrain_now") in page
        assert "Retrain now</button>" in page


def test_a_running_job_page_refreshes_itself_and_is_read_only(ops_client, kb):
    job = RetrainingJob.objects.create(knowledge_base=kb, trigger="admin", status="running", progress=40)
    page = ops_client.get(reverse("admin:learning_retrainingjob_change", args=[job.pk])).content.decode()
    assert '<meta http-equiv="refresh"' in page
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page

    RetrainingJob.objects.filter(pk=job.pk).update(status="promoted")
    page = ops_client.get(reverse("admin:learning_retrainingjob_change", args=[job.pk])).content.decode()
    assert '<meta http-equiv="refresh"' not in page


def test_a_job_page_shows_local_times_and_no_server_paths_or_raw_json(ops_client, kb, settings):
    settings.TIME_ZONE = "Europe/Madrid"
    started = datetime(2025, 1, 15, 23, 59, 58, tzinfo=UTC)
    job = RetrainingJob.objects.create(
        knowledge_base=kb,
        trigger="admin",
        status="promoted",
        created_at=started,
        started_at=started,
        finished_at=datetime(2025, 1, 16, 0, 0, 5, tzinfo=UTC),
        log="23:59:58 collecting labelled examples\n00:00:03 training data exported to /srv/app/var/exports/7\n",
        artefacts={"export": "/srv/app/var/exports/7"},
        metrics={"examples": 12, "live": {}, "candidate": {}},
    )
    page = ops_client.get(reverse("admin:learning_retrainingjob_change", args=[job.pk])).content.decode()
    assert "/srv/app" not in page
    assert "training data exported to (on the server)" in page
    assert "00:59:58 collecting labelled examples" in page  # 23:59:58 UTC, shown in Madrid time
    assert "01:00:03 training data exported" in page
    assert "2025-01-16 00:59:58 (Europe/Madrid)" in page
    assert "2025-01-16 01:00:05 (Europe/Madrid)" in page
    assert "&quot;examples&quot;" not in page
    assert '"examples": 12' not in page
    assert "Times are in Europe/Madrid." in page
