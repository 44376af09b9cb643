"""Retraining jobs whose worker died: heartbeats, stale jobs marked failed, resuming that does what it says."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from knowledge.actions import get_or_create_knowledge_base
from knowledge.models import KnowledgeBase, RoutingVersion
from learning import retraining
from learning.models import RetrainingJob
from learning.replay import pick_half, replay

pytestmark = pytest.mark.django_db

Status = RetrainingJob.Status


@pytest.fixture
def bare_kb(db) -> KnowledgeBase:
    """A knowledge base with nothing ingested: enough for the job's lifecycle, which never looks inside."""
    return get_or_create_knowledge_base("bare", "Bare")


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The job ids handed to the broker (nothing runs them); jobs are handed over when the transaction commits."""
    sent: list[int] = []
    monkeypatch.setattr("learning.tasks.run_retraining_job.delay", lambda job_id: sent.append(job_id))
    return sent


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run what waits for the commit of the test's transaction, as a real request's commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def running_job(kb: KnowledgeBase, silent_for: timedelta, stage: str = "training") -> RetrainingJob:
    """A job a worker claimed, whose last heartbeat was ``silent_for`` ago."""
    job, _ = retraining.request_job(kb, RetrainingJob.Trigger.ADMIN)
    assert retraining.claim(job)
    RetrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - silent_for, stage=stage)
    job.refresh_from_db()
    return job


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_a_job_without_a_heartbeat_for_the_stale_time_is_marked_failed_with_what_happened(bare_kb, settings):
    settings.LEARNING_JOB_STALE_MINUTES = 10
    alive = running_job(bare_kb, timedelta(minutes=9))
    assert retraining.fail_stale_jobs(bare_kb) == []
    RetrainingJob.objects.filter(pk=alive.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=11))

    assert retraining.fail_stale_jobs(bare_kb) == [alive.pk]

    job = RetrainingJob.objects.get(pk=alive.pk)
    assert job.status == Status.FAILED
    assert job.error.startswith("Stale: no heartbeat from its worker (")
    assert job.worker in job.error  # host:pid of the worker that died
    assert "more than 10 minutes" in job.error
    assert "during training" in job.error
    assert "Resume it" in job.error
    assert job.finished_at is not None
    assert "failed: Stale" in job.log


def test_retrain_now_is_not_blocked_by_a_job_whose_worker_died(ops_client, bare_kb, published, committed, settings):
    settings.LEARNING_JOB_STALE_MINUTES = 10
    dead = running_job(bare_kb, timedelta(minutes=30))
    url = reverse("admin:knowledge_knowledgebase_changelist")

    with committed():
        response = ops_client.post(url, {"action": "retrain_now", "_selected_action": [bare_kb.pk]}, follow=True)

    new = RetrainingJob.objects.filter(knowledge_base=bare_kb).latest("pk")
    assert new.pk != dead.pk
    assert new.status == Status.QUEUED
    assert published == [new.pk]
    assert RetrainingJob.objects.get(pk=dead.pk).status == Status.FAILED
    said = messages_of(response)
    assert f"Bare: job #{dead.pk} had lost its worker (no heartbeat); marked failed, it can be resumed." in said
    assert f"Bare: retraining job #{new.pk} queued." in said


def test_retrain_now_still_refuses_while_a_live_job_runs(ops_client, bare_kb, published):
    live = running_job(bare_kb, timedelta(seconds=20))
    url = reverse("admin:knowledge_knowledgebase_changelist")
    response = ops_client.post(url, {"action": "retrain_now", "_selected_action": [bare_kb.pk]}, follow=True)
    assert f"Bare: retraining job #{live.pk} already running." in messages_of(response)
    assert published == []


def test_the_nightly_schedule_is_not_blocked_by_a_job_whose_worker_died(bare_kb, settings, celery_eager, committed):
    from learning.tasks import retrain_all

    settings.LEARNING_MIN_NEW_EXAMPLES = 20
    dead = running_job(bare_kb, timedelta(hours=2))

    with committed():
        retrain_all.delay()

    scheduled = RetrainingJob.objects.get(knowledge_base=bare_kb, trigger=RetrainingJob.Trigger.SCHEDULE)
    assert scheduled.status == Status.SKIPPED  # it ran (and had too few new examples)
    assert RetrainingJob.objects.get(pk=dead.pk).status == Status.FAILED


def test_admin_resume_queues_failed_and_stale_jobs_and_says_what_it_skipped(ops_client, published, committed, settings):
    settings.LEARNING_JOB_STALE_MINUTES = 10
    kbs = [get_or_create_knowledge_base(slug, slug.title()) for slug in ("one", "two", "three", "four")]
    failed = RetrainingJob.objects.create(knowledge_base=kbs[0], trigger="command", status=Status.FAILED, error="x")
    stale = running_job(kbs[1], timedelta(minutes=45))
    alive = running_job(kbs[2], timedelta(seconds=5))
    promoted = RetrainingJob.objects.create(knowledge_base=kbs[3], trigger="command", status=Status.PROMOTED)
    picked = [failed.pk, stale.pk, alive.pk, promoted.pk]

    with committed():
        response = ops_client.post(
            reverse("admin:learning_retrainingjob_changelist"),
            {"action": "resume", "_selected_action": picked},
            follow=True,
        )

    assert sorted(published) == sorted([failed.pk, stale.pk])
    statuses = dict(RetrainingJob.objects.filter(pk__in=picked).values_list("pk", "status"))
    assert statuses == {failed.pk: "queued", stale.pk: "queued", alive.pk: "running", promoted.pk: "promoted"}
    [queued, skipped] = messages_of(response)
    assert queued == f"Queued again: #{failed.pk}, #{stale.pk}."
    assert skipped.startswith("Not queued: ")
    assert f"job #{alive.pk} is running (last heartbeat" in skipped
    assert "after 10 minutes without a heartbeat" in skipped
    assert f"job #{promoted.pk} is promoted: only failed jobs can be resumed" in skipped


def test_resume_skips_a_job_while_another_job_of_its_knowledge_base_is_running(bare_kb, published):
    failed = RetrainingJob.objects.create(knowledge_base=bare_kb, trigger="command", status=Status.FAILED)
    other = running_job(bare_kb, timedelta(seconds=5))
    reason = retraining.resume_job(failed)
    assert reason == f"job #{other.pk} of bare is running; resume #{failed.pk} after it ends"
    assert published == []


def test_a_queued_job_no_worker_took_can_be_queued_again(bare_kb, published, committed, settings):
    settings.LEARNING_JOB_STALE_MINUTES = 10
    job, _ = retraining.request_job(bare_kb, RetrainingJob.Trigger.ADMIN)
    with committed():
        retraining.queue_job(job)
    assert retraining.resume_job(job) is not None  # just queued: not again
    RetrainingJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(minutes=11))
    with committed():
        assert retraining.resume_job(job) is None
    assert published == [job.pk, job.pk]


def test_a_job_the_broker_could_not_take_fails_instead_of_staying_queued(bare_kb, monkeypatch, committed):
    def broker_down(job_id: int) -> None:
        raise ConnectionRefusedError("Error 111 connecting to redis:6379")

    monkeypatch.setattr("learning.tasks.run_retraining_job.delay", broker_down)
    job, _ = retraining.request_job(bare_kb, RetrainingJob.Trigger.ADMIN)
    with committed():
        retraining.queue_job(job)
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert "Could not reach the task queue (ConnectionRefusedError" in job.error
    _, created = retraining.request_job(bare_kb, RetrainingJob.Trigger.ADMIN)
    assert created  # and it blocks nothing


def test_a_task_delivered_for_a_job_that_is_no_longer_queued_runs_nothing(bare_kb, monkeypatch):
    from learning.tasks import run_retraining_job

    ran: list[int] = []
    monkeypatch.setattr("learning.retraining.run_job", lambda job: ran.append(job.pk))
    job = RetrainingJob.objects.create(knowledge_base=bare_kb, trigger="command", status=Status.FAILED)
    run_retraining_job(job.pk)  # e.g. the stale job's own task, arriving late
    assert ran == []


def test_retrain_resume_refuses_a_job_that_is_alive_with_a_clear_error(bare_kb):
    live = running_job(bare_kb, timedelta(seconds=30))
    with pytest.raises(CommandError, match=rf"Cannot resume: job #{live.pk} is running \(last heartbeat"):
        call_command("retrain", "--kb", "bare", "--resume", str(live.pk), stdout=StringIO(), stderr=StringIO())
    assert RetrainingJob.objects.get(pk=live.pk).status == Status.RUNNING


def test_retrain_resume_refuses_a_finished_job_and_an_unknown_one(bare_kb):
    done = RetrainingJob.objects.create(knowledge_base=bare_kb, trigger="command", status=Status.REFUSED)
    with pytest.raises(CommandError, match="is refused by the gate: only failed jobs can be resumed"):
        call_command("retrain", "--kb", "bare", "--resume", str(done.pk), stdout=StringIO())
    with pytest.raises(CommandError, match="bare has no job #999"):
        call_command("retrain", "--kb", "bare", "--resume", "999", stdout=StringIO())


def test_retrain_resume_enqueue_queues_a_stale_job(bare_kb, published, committed, settings):
    settings.LEARNING_JOB_STALE_MINUTES = 10
    stale = running_job(bare_kb, timedelta(minutes=12))
    out = StringIO()
    with committed():
        call_command("retrain", "--kb", "bare", "--resume", str(stale.pk), "--enqueue", stdout=out, stderr=StringIO())
    assert out.getvalue().strip() == f"job #{stale.pk} queued again"
    assert published == [stale.pk]


def test_retrain_resume_runs_a_job_whose_worker_died_to_the_end(kb, queries, settings):
    """The job died after saving its candidate; resumed, it reuses the candidate and the gate decides."""
    settings.LEARNING_JOB_STALE_MINUTES = 10
    replay(kb, pick_half(queries, "first", seed=0))
    job, _ = retraining.request_job(kb, RetrainingJob.Trigger.COMMAND)
    retraining.run_job(job)
    job.refresh_from_db()
    assert job.status in (Status.PROMOTED, Status.REFUSED)
    candidate = job.candidate
    assert candidate is not None
    # As the worker left it when it was killed during the evaluation: running, candidate saved, silent.
    RetrainingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=20), stage="evaluating"
    )
    RoutingVersion.objects.filter(pk=candidate.pk).update(is_active=False)
    if job.baseline_version is not None:
        RoutingVersion.objects.filter(knowledge_base=kb, number=job.baseline_version).update(is_active=True)

    out, err = StringIO(), StringIO()
    call_command("retrain", "--kb", kb.slug, "--resume", str(job.pk), stdout=out, stderr=err)

    job.refresh_from_db()
    assert f"job #{job.pk} had lost its worker (no heartbeat): marked failed" in err.getvalue()
    assert job.status in (Status.PROMOTED, Status.REFUSED), job.log
    assert job.attempts == 2
    assert job.candidate == candidate  # went on from the saved candidate
    assert f"resuming with the candidate saved before: v{candidate.number}" in job.log
    assert out.getvalue().strip().endswith(f"job #{job.pk}: {job.status}")


@pytest.mark.django_db(transaction=True)
def test_a_running_job_beats_while_it_works_and_stops_when_it_is_no_longer_its_own(monkeypatch):
    monkeypatch.setattr(retraining, "HEARTBEAT_S", 0.05)
    kb = get_or_create_knowledge_base("beats", "Beats")
    job, _ = retraining.request_job(kb, RetrainingJob.Trigger.COMMAND)
    assert retraining.claim(job)
    started = job.heartbeat_at
    assert started is not None

    with retraining.Heartbeat(job) as heartbeat:
        time.sleep(0.5)
        beat = RetrainingJob.objects.get(pk=job.pk).heartbeat_at
        assert beat is not None
        assert beat > started
        RetrainingJob.objects.filter(pk=job.pk).update(status=Status.FAILED)  # e.g. marked stale by mistake
        time.sleep(0.3)
        assert heartbeat.thread is not None
        assert not heartbeat.thread.is_alive()  # it stopped: a job it does not own any more
    assert RetrainingJob.objects.get(pk=job.pk).status == Status.FAILED


def test_a_runner_that_lost_its_job_stops_without_touching_it(bare_kb):
    job, _ = retraining.request_job(bare_kb, RetrainingJob.Trigger.COMMAND)
    assert retraining.claim(job)
    runner = retraining.Runner(job)
    runner.say("step one", 10)
    # Marked stale and resumed by another worker meanwhile: a new attempt owns it.
    RetrainingJob.objects.filter(pk=job.pk).update(attempts=job.attempts + 1, log="theirs\n")
    with pytest.raises(retraining.JobLost):
        runner.say("step two", 20)
    assert RetrainingJob.objects.get(pk=job.pk).log == "theirs\n"


def test_the_nightly_schedule_first_logs_the_turns_whose_log_task_never_reached_a_worker(make_turn, settings):
    from learning.models import TurnLog
    from learning.tasks import log_missed_turns, retrain_all

    settings.LEARNING_MIN_NEW_EXAMPLES = 1000
    # Stored while the broker was down: the reply's log task was never delivered (here: never committed).
    _, question, _ = make_turn("¿Hacéis envíos a Canarias?")
    assert not TurnLog.objects.filter(question=question).exists()

    retrain_all()

    assert TurnLog.objects.get(question=question).text == "¿Hacéis envíos a Canarias?"
    assert log_missed_turns() == 0  # nothing left; logging again would only rewrite the same row
