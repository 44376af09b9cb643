"""The periodic tasks of the learning loop, created once (idempotent) after every migrate.

Ops can change the crontab or disable a task in the admin (django-celery-beat); this never overwrites
an existing task, it only creates missing ones.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

NIGHTLY_RETRAINING = "learning: retrain every knowledge base"
DAILY_PURGE = "learning: delete expired turn logs"


def _crontab(spec: str) -> Any:
    from django_celery_beat.models import CrontabSchedule

    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(f"LEARNING_RETRAIN_CRON={spec!r} is not 'minute hour day month weekday'")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=settings.TIME_ZONE,
    )
    return schedule


def ensure_schedule(**kwargs: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    if not PeriodicTask.objects.filter(name=NIGHTLY_RETRAINING).exists():
        PeriodicTask.objects.create(
            name=NIGHTLY_RETRAINING,
            task="learning.tasks.retrain_all",
            crontab=_crontab(settings.LEARNING_RETRAIN_CRON),
            description="Retrains each knowledge base with enough new labelled examples (LEARNING_MIN_NEW_EXAMPLES).",
        )
    if not PeriodicTask.objects.filter(name=DAILY_PURGE).exists():
        PeriodicTask.objects.create(
            name=DAILY_PURGE,
            task="learning.tasks.purge_expired_logs",
            crontab=_crontab("30 2 * * *"),
            description="Deletes turn logs older than LEARNING_RETENTION_DAYS.",
        )
