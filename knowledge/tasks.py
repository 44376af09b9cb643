"""Celery tasks of the knowledge base: thin wrappers that re-read rows and call actions."""

from __future__ import annotations

import logging

from celery import shared_task

from knowledge.models import Source

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sync_source_task(source_id: int) -> None:
    from knowledge.actions import sync_source

    source = Source.objects.filter(pk=source_id).select_related("knowledge_base").first()
    if source is None:
        logger.info("source gone before sync", extra={"source": source_id})
        return

    def progress(done: int, total: int) -> None:
        Source.objects.filter(pk=source_id).update(items_done=done, items_total=total)

    sync_source(source, progress)
