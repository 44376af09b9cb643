"""Routing versions and the learned phrasings each was trained with: promotion and rollback."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.contrib.auth.models import User

from knowledge.models import Entry, Example, KnowledgeBase, RoutingVersion
from learning.models import RetrainingJob

logger = logging.getLogger(__name__)

LEARNED_ORIGIN = "conversation"
"""``knowledge.Example.origin`` of phrasings the learning loop adds; the loop owns exactly these rows."""


def learned_examples_of(version: RoutingVersion | None) -> list[tuple[str, int | None]]:
    """The learned (text, entry id) pairs ``version`` was trained with; none for a version the loop did not make."""
    if version is None:
        return []
    job = RetrainingJob.objects.filter(candidate=version).exclude(artefacts__examples=None).first()
    pairs = job.artefacts.get("examples", []) if job else []
    return [(str(text), int(entry_id) if entry_id is not None else None) for text, entry_id in pairs]


def sync_learned_examples(kb: KnowledgeBase, desired: Iterable[tuple[str, int | None]]) -> tuple[int, int]:
    """Make the learned phrasings in the index exactly ``desired``; returns (added, removed)."""
    from knowledge import index, routing

    wanted = {(text, entry_id) for text, entry_id in desired}
    current = {(ex.text, ex.entry_id): ex.pk for ex in Example.objects.filter(knowledge_base=kb, origin=LEARNED_ORIGIN)}
    stale = [pk for pair, pk in current.items() if pair not in wanted]
    if stale:
        index.remove_examples(kb, stale)
        Example.objects.filter(pk__in=stale).delete()
    missing = [pair for pair in wanted if pair not in current]
    entries = Entry.objects.in_bulk([entry_id for _, entry_id in missing if entry_id is not None])
    pairs = [
        (text, entries.get(entry_id) if entry_id is not None else None)
        for text, entry_id in sorted(missing, key=lambda p: (p[0], p[1] or 0))
        if entry_id is None or entry_id in entries
    ]
    added = routing.add_examples(kb, pairs, origin=LEARNED_ORIGIN) if pairs else []
    return len(added), len(stale)


class VersionUnavailable(Exception):
    """The version cannot go live on this machine (its encoder file is gone), or not now."""


class RetrainingRunning(VersionUnavailable):
    """A retraining job of the knowledge base is running: it sets the index's phrasings and may promote its own
    candidate, so a version made live meanwhile could be undone or mixed with it."""


def check_available(version: RoutingVersion) -> None:
    """Raise VersionUnavailable if ``version`` cannot go live here, RetrainingRunning if not now."""
    from knowledge.embeddings import spec_path
    from learning.retraining import fail_stale_jobs

    path = spec_path(version.encoder)
    if path is not None and not path.is_file():
        raise VersionUnavailable(
            f"v{version.number}'s encoder file {path.name} is not on this machine (a refused candidate's is deleted): "
            "it cannot be made live"
        )
    kb = version.knowledge_base
    fail_stale_jobs(kb)  # a job whose worker died does not block anything
    running = RetrainingJob.objects.filter(knowledge_base=kb, status=RetrainingJob.Status.RUNNING).first()
    if running is not None:
        raise RetrainingRunning(
            f"retraining job #{running.pk} is running for {kb.slug}: make v{version.number} live when it has finished"
        )


def needs_new_index(version: RoutingVersion) -> bool:
    """Making ``version`` live first builds a whole index with its encoder (minutes for a large knowledge base):
    it uses another encoder than the knowledge base does now."""
    from knowledge import index

    kb = version.knowledge_base
    index.encoder_of(kb)  # kb.encoder as the database has it now
    return version.encoder != kb.encoder


def activate_version(version: RoutingVersion, user: User | None = None) -> None:
    """Promote or roll back: the index gets the version's learned phrasings, then the version goes live (with its
    encoder's index, if it has its own: ``routing.activate_version``).

    The chat reads the active version per message, so the switch needs no restart.
    """
    from knowledge import routing

    check_available(version)
    sync_learned_examples(version.knowledge_base, learned_examples_of(version))
    routing.activate_version(version)
    logger.info(
        "routing version activated",
        extra={"kb": version.knowledge_base.slug, "version": version.number, "by": user.get_username() if user else ""},
    )
