"""Asking for a retraining job: one per knowledge base at a time. Running it is ``learning.retraining``;
handing it to a worker is the caller's (``retraining.queue_job``), so this module never imports tasks."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from knowledge.models import KnowledgeBase
from learning.models import RetrainingJob


def request_retraining(kb: KnowledgeBase, trigger: str, user: User | None = None) -> tuple[RetrainingJob, bool]:
    """A queued job for ``kb``, or the one already queued or running (asking twice starts one job)."""
    with transaction.atomic():
        KnowledgeBase.objects.select_for_update().filter(pk=kb.pk).first()
        pending = RetrainingJob.objects.filter(
            knowledge_base=kb, status__in=[RetrainingJob.Status.QUEUED, RetrainingJob.Status.RUNNING]
        ).first()
        if pending is not None:
            return pending, False
        previous = (
            RetrainingJob.objects.filter(knowledge_base=kb, status__in=RetrainingJob.FINISHED)
            .exclude(status=RetrainingJob.Status.SKIPPED)
            .order_by("-window_end")
            .first()
        )
        job = RetrainingJob.objects.create(
            knowledge_base=kb,
            trigger=trigger,
            triggered_by=user,
            window_start=previous.window_end if previous else None,
            window_end=timezone.now(),
        )
    return job, True
