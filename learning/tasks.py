"""Celery tasks of the learning loop: thin wrappers that re-read rows and call actions.

Short tasks are acknowledged late (CELERY_TASK_ACKS_LATE): a task whose worker dies runs again, so each one
is idempotent. Their hard time limits and retry countdowns stay under CELERY_VISIBILITY_TIMEOUT_S, so Redis
never hands a message that is still being worked on to a second worker.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db.utils import OperationalError

from chat.models import Message
from knowledge.models import KnowledgeBase, RoutingVersion
from learning.models import RetrainingJob

logger = logging.getLogger(__name__)


@shared_task(
    ignore_result=True,
    autoretry_for=(OperationalError,),  # SQLite "database is locked" and dropped PostgreSQL connections
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=60,
    time_limit=90,
)
def log_turn(message_id: int) -> None:
    """Idempotent: one TurnLog per customer message, rewritten from the stored messages on every run."""
    from learning.actions import log_reply

    reply = Message.objects.filter(pk=message_id).first()
    if reply is None:
        logger.info("message gone before it was logged", extra={"message_id": message_id})
        return
    log_reply(reply)


@shared_task(bind=True, ignore_result=True, acks_late=False, soft_time_limit=3600, time_limit=3660, max_retries=60)
def activate_version_task(self: Task, version_id: int, user_id: int | None = None) -> None:
    """Make a routing version live whose encoder's index must be built first (ops' "Make this version live" on a
    version with another encoder). Acknowledged on receipt, like a job: ops can ask again. Waits (retries every
    minute, up to an hour) while a retraining job of the knowledge base runs."""
    from django.contrib.auth.models import User

    from learning.actions import RetrainingRunning, VersionUnavailable, activate_version

    version = RoutingVersion.objects.select_related("knowledge_base").filter(pk=version_id).first()
    if version is None:
        logger.info("routing version gone before it went live", extra={"version": version_id})
        return
    try:
        activate_version(version, User.objects.filter(pk=user_id).first() if user_id else None)
    except RetrainingRunning as exc:
        logger.info("routing version waits for a retraining job", extra={"version": version_id})
        raise self.retry(countdown=60) from exc
    except VersionUnavailable:
        logger.exception("routing version cannot go live", extra={"version": version_id})


@shared_task(ignore_result=True, acks_late=False)
def run_retraining_job(job_id: int) -> None:
    """Acknowledged on receipt: a job that killed its worker must not be retried in a loop. Its heartbeat stops,
    so it is marked failed (stale) and can be resumed by ops; a new request is never blocked by it."""
    from learning.retraining import JobBusy, run_job

    job = RetrainingJob.objects.select_related("knowledge_base").filter(pk=job_id).first()
    if job is None:
        logger.info("retraining job gone", extra={"job": job_id})
        return
    if job.status != RetrainingJob.Status.QUEUED:  # e.g. delivered again, or failed as stale meanwhile
        logger.info("retraining job is not queued: nothing to run", extra={"job": job_id, "status": job.status})
        return
    try:
        run_job(job)
    except JobBusy as exc:
        RetrainingJob.objects.filter(pk=job_id, status=RetrainingJob.Status.QUEUED).update(
            status=RetrainingJob.Status.FAILED, error=str(exc)
        )


@shared_task(ignore_result=True, soft_time_limit=200, time_limit=240)
def retrain_all() -> None:
    """The nightly schedule: one job per knowledge base; each skips itself without enough new examples.

    Run twice (redelivered), it queues nothing new: a knowledge base with a queued or running job keeps it.
    A job whose worker died does not count as running (``request_job`` marks it failed first)."""
    from learning.retraining import queue_job, request_job

    log_missed_turns()
    for kb in KnowledgeBase.objects.all():
        job, created = request_job(kb, RetrainingJob.Trigger.SCHEDULE)
        if created:
            queue_job(job, at_commit=False)  # the job's row is committed: no transaction here


def log_missed_turns(days: int = 7) -> int:
    """Log the recent turns whose log task never reached a worker (enqueued while the broker was down).

    The chat never waits for the broker: a reply stored during a Redis outage has no TurnLog until this runs.
    """
    from datetime import timedelta

    from django.utils import timezone

    from learning.actions import refresh_turn

    missed = (
        Message.objects.filter(
            role=Message.Role.CUSTOMER,
            created_at__gte=timezone.now() - timedelta(days=days),
            turn_log__isnull=True,
            replies__role__in=[Message.Role.BOT, Message.Role.SYSTEM],
        )
        .select_related("conversation__knowledge_base")
        .distinct()
    )
    count = 0
    for question in missed.iterator():
        refresh_turn(question)
        count += 1
    if count:
        logger.info("turn logs written for missed turns", extra={"turns": count})
    return count


@shared_task(ignore_result=True, soft_time_limit=200, time_limit=240)
def purge_expired_logs() -> None:
    from learning.actions import purge_expired_logs as purge

    purge()
