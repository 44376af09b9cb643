"""Ops' admin: the learning pages open, "Retrain now" queues one job, a version is made live from the list."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from knowledge import routing
from learning.models import RetrainingJob

pytestmark = pytest.mark.django_db


def test_learning_pages_open(ops_client, kb):
    for name in ("turnlog", "labelledexample", "retrainingjob"):
        assert ops_client.get(reverse(f"admin:learning_{name}_changelist")).status_code == 200


def test_retrain_now_queues_one_job_and_versions_can_be_rolled_back(ops_client, kb, django_capture_on_commit_callbacks):
    url = reverse("admin:knowledge_knowledgebase_changelist")
    with django_capture_on_commit_callbacks() as callbacks:
        for _ in range(2):
            ops_client.post(url, {"action": "retrain_now", "_selected_action": [kb.pk]})
    assert RetrainingJob.objects.filter(knowledge_base=kb, trigger="admin").count() == 1
    assert len(callbacks) == 1

    v1 = routing.save_version(kb, routing.untrained_model(kb), {})
    v2 = routing.save_version(kb, routing.untrained_model(kb), {})
    url = reverse("admin:knowledge_routingversion_changelist")
    for version in (v2, v1):
        ops_client.post(url, {"action": "make_active", "_selected_action": [version.pk]})
        assert routing.active_model(kb)[0] == version.number


def test_a_job_shows_the_candidate_against_the_live_version(ops_client, kb):
    live = {"holdout": {"n": 40, "auto_resolution": 0.5, "wrong_answer_rate": 0.04, "oos_recall": None}}
    candidate = {"holdout": {"n": 40, "auto_resolution": 0.625, "wrong_answer_rate": 0.03, "oos_recall": None}}
    gate = {"promote": True, "reasons": [], "warnings": ["no evaluation set has out-of-scope questions: <b>x</b>"]}
    job = RetrainingJob.objects.create(
        knowledge_base=kb,
        trigger="command",
        status="promoted",
        metrics={"live": live, "candidate": candidate, "gate": gate},
    )
    page = ops_client.get(reverse("admin:learning_retrainingjob_change", args=[job.pk])).content.decode()
    assert "50.0% → 62.5%" in page
    assert "4.0% → 3.0%" in page
    assert "Gate: <strong>promote</strong>" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page  # escaped


def test_no_version_is_made_live_while_a_retraining_job_runs(ops_client, kb):
    v1 = routing.save_version(kb, routing.untrained_model(kb), {})
    v2 = routing.save_version(kb, routing.untrained_model(kb), {})
    from learning import actions

    actions.activate_version(v1)
    job = RetrainingJob.objects.create(
        knowledge_base=kb, trigger="admin", status="running", heartbeat_at=timezone.now()
    )
    url = reverse("admin:knowledge_routingversion_changelist")

    page = ops_client.post(url, {"action": "make_active", "_selected_action": [v2.pk]}, follow=True).content.decode()

    assert f"Retraining job #{job.pk} is running for {kb.slug}: make v2 live when it has finished" in page
    assert routing.active_model(kb)[0] == v1.number
    RetrainingJob.objects.filter(pk=job.pk).update(status="promoted")
    ops_client.post(url, {"action": "make_active", "_selected_action": [v2.pk]})
    assert routing.active_model(kb)[0] == v2.number


def test_a_queued_activation_waits_for_a_running_retraining_job(kb, monkeypatch):
    from learning.tasks import activate_version_task

    v1 = routing.save_version(kb, routing.untrained_model(kb), {})
    RetrainingJob.objects.create(knowledge_base=kb, trigger="admin", status="running", heartbeat_at=timezone.now())
    retried: list[int] = []

    class Again(Exception):
        pass

    def retry(countdown: int) -> Exception:
        retried.append(countdown)
        return Again()

    monkeypatch.setattr(activate_version_task, "retry", retry)
    with pytest.raises(Again):
        activate_version_task.run(v1.pk)
    assert retried == [60]
    assert routing.active_model(kb)[0] is None  # nothing went live meanwhile


def test_a_queued_activation_of_a_version_deleted_meanwhile_does_nothing(kb):
    from learning.tasks import activate_version_task

    activate_version_task.run(987654)  # logged, not raised: ops can ask again
    assert routing.active_model(kb)[0] is None
