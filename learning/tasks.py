"""Celery tasks of the learning loop: thin wrappers that re-read rows and call actions."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db.utils import OperationalError

from chat.models import Message
from knowledge.models import KnowledgeBase
from learning.models import RetrainingJob

logger = logging.getLogger(__name__)


@shared_task(
    ignore_result=True,
    autoretry_for=(OperationalError,),  # SQLite "database is locked" and dropped PostgreSQL connections
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def log_turn(message_id: int) -> None:
    from learning.actions import log_reply

    reply = Message.objects.filter(pk=message_id).first()
    if reply is None:
        logger.info("message gone before it was logged", extra={"message_id": message_id})
        return
    log_reply(reply)


@shared_task(ignore_result=True, acks_late=False)
def run_retraining_job(job_id: int) -> None:
    """Not acknowledged late: a job that killed its worker must not be retried in a loop; it is resumed by ops."""
    from learning.retraining import JobBusy, run_job

    job = RetrainingJob.objects.select_related("knowledge_base").filter(pk=job_id).first()
    if job is None:
        logger.info("retraining job gone", extra={"job": job_id})
        return
    try:
        run_job(job)
    except JobBusy as exc:
        RetrainingJob.objects.filter(pk=job_id, status=RetrainingJob.Status.QUEUED).update(
            status=RetrainingJob.Status.FAILED, error=str(exc)
        )


@shared_task(ignore_result=True)
def retrain_all() -> None:
    """The nightly schedule: one job per knowledge base; each skips itself without enough new examples."""
    from learning.actions import request_retraining

    for kb in KnowledgeBase.objects.all():
        job, created = request_retraining(kb, RetrainingJob.Trigger.SCHEDULE)
        if created:
            run_retraining_job.delay(job.pk)


@shared_task(ignore_result=True)
def purge_expired_logs() -> None:
    from learning.actions import purge_expired_logs as purge

    purge()
