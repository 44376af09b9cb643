"""What can be done to a knowledge base. Views, admin actions, commands and tasks call these."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from knowledge import index
from knowledge.integrity import Review, Reviewer, describe
from knowledge.language import detect_language
from knowledge.models import Entry, KnowledgeBase, Source
from knowledge.parsers import ParsedItem, ParseIssue, ParseResult, crawl, parse_file

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    held: int = 0  # entries held for review by the ingestion checks; each also has a line in ``issues``
    issues: list[ParseIssue] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.issues:
            return Source.Status.OK
        if self.added + self.updated + self.unchanged:
            return Source.Status.PARTIAL
        return Source.Status.FAILED


def get_or_create_knowledge_base(slug: str = "default", name: str = "") -> KnowledgeBase:
    kb, _ = KnowledgeBase.objects.get_or_create(slug=slug, defaults={"name": name or slug.replace("-", " ").title()})
    return kb


def source_for_location(kb: KnowledgeBase, location: str, name: str = "") -> Source:
    """The source for a path or URL, created on first use: ingesting the same place again updates it."""
    is_url = location.startswith(("http://", "https://"))
    if not is_url:
        location = str(Path(location).resolve())
    source, _ = Source.objects.get_or_create(
        knowledge_base=kb,
        name=name or (location if is_url else Path(location).name),
        defaults={"kind": Source.Kind.URL if is_url else Source.Kind.FILE, "location": location},
    )
    if source.location != location and source.kind != Source.Kind.MANUAL:
        source.location = location
        source.save(update_fields=["location"])
    return source


def read_source(source: Source) -> ParseResult:
    limits = {
        "max_bytes": settings.KNOWLEDGE_MAX_FILE_BYTES,
        "chunk_chars": settings.KNOWLEDGE_CHUNK_CHARS,
        "chunk_overlap": settings.KNOWLEDGE_CHUNK_OVERLAP,
    }
    if source.kind == Source.Kind.URL:
        return crawl(
            source.location,
            max_pages=settings.KNOWLEDGE_CRAWL_MAX_PAGES,
            timeout_s=settings.KNOWLEDGE_CRAWL_TIMEOUT_S,
            **limits,
        )
    path = Path(source.upload.path) if source.upload else Path(source.location)
    if not path.is_file():
        return ParseResult(items=[], issues=[ParseIssue(str(path), "file not found; nothing was changed")])
    return parse_file(path, **limits)


def _entry_fields(kb: KnowledgeBase, item: ParsedItem) -> dict[str, object]:
    translations = {lang: {"question": q, "answer": a} for lang, q, a in item.translations}
    return {
        "kind": item.kind,
        "question": item.question.strip(),
        "answer": item.text.strip(),
        "language": item.language or detect_language(f"{item.question} {item.text}", kb.default_language) or "",
        "url": item.url,
        "phrasings": [p.strip() for p in item.phrasings if p.strip()],
        "translations": translations,
    }


def _acceptable(item: ParsedItem, source: Source) -> ParseIssue | None:
    where = f"{source.name} entry {item.key}"
    if not item.question.strip() and not item.text.strip():
        return ParseIssue(where, "empty entry: skipped")
    if len(item.question) + len(item.text) > settings.KNOWLEDGE_MAX_ENTRY_CHARS:
        return ParseIssue(
            where, f"longer than KNOWLEDGE_MAX_ENTRY_CHARS ({settings.KNOWLEDGE_MAX_ENTRY_CHARS}): skipped"
        )
    return None


def sync_source(source: Source, progress: Callable[[int, int], None] | None = None) -> SyncReport:
    """Bring the source's entries and their index in line with what the source holds now.

    Re-syncing unchanged content changes nothing; a changed entry is updated in place (same row,
    same key); an entry no longer in the source is removed, but only when the source was read
    without errors, so that a broken upload never deletes what is already answerable.
    """
    kb = source.knowledge_base
    Source.objects.filter(pk=source.pk).update(status=Source.Status.RUNNING, error="")
    try:
        parsed = read_source(source)
        report = _apply(source, parsed, progress)
    except Exception as exc:
        logger.exception("source sync failed", extra={"source": source.pk})
        Source.objects.filter(pk=source.pk).update(
            status=Source.Status.FAILED, error=f"{type(exc).__name__}: {exc}", last_synced_at=timezone.now()
        )
        raise
    Source.objects.filter(pk=source.pk).update(
        status=report.status,
        last_synced_at=timezone.now(),
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        removed=report.removed,
        held=report.held,
        issues=[{"location": i.location, "message": i.message} for i in report.issues],
    )
    logger.info(
        "source synced",
        extra={
            "kb": kb.slug,
            "source": source.name,
            "added": report.added,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "removed": report.removed,
            "held": report.held,
            "issues": len(report.issues),
        },
    )
    return report


def _apply(source: Source, parsed: ParseResult, progress: Callable[[int, int], None] | None) -> SyncReport:
    kb = source.knowledge_base
    report = SyncReport(issues=list(parsed.issues))
    existing = {entry.key: entry for entry in source.entries.all()}
    other_hashes = dict(
        Entry.objects.filter(knowledge_base=kb).exclude(source=source).values_list("content_hash", "source__name")
    )
    reviewer = Reviewer(kb, source)
    reviewer.prepare(
        [item.question for item in parsed.items if item.kind == Entry.Kind.FAQ]
        + [q for item in parsed.items if item.kind == Entry.Kind.FAQ for _, q, _ in item.translations]
    )
    seen: set[str] = set()
    to_index: list[Entry] = []
    total = len(parsed.items)
    Source.objects.filter(pk=source.pk).update(items_total=total, items_done=0)
    with transaction.atomic():
        for done, item in enumerate(parsed.items, start=1):
            problem = _acceptable(item, source)
            if problem is None and item.key in seen:
                problem = ParseIssue(f"{source.name} entry {item.key}", "duplicate id: the first one was kept")
            if problem is not None:
                report.issues.append(problem)
                continue
            seen.add(item.key)
            entry = existing.get(item.key) or Entry(knowledge_base=kb, source=source, key=item.key)
            for name, value in _entry_fields(kb, item).items():
                setattr(entry, name, value)
            new_hash = entry.compute_hash()
            if entry.pk is None and new_hash in other_hashes:
                report.issues.append(
                    ParseIssue(
                        f"{source.name} entry {item.key}", f"same as an entry of {other_hashes[new_hash]}: skipped"
                    )
                )
                continue
            changed = entry.pk is None or entry.content_hash != new_hash
            # New or changed content is checked; a held entry is checked again, as what it clashed with may be gone.
            # Unchanged content that is answerable stays as ops left it: re-syncing never re-holds what they published.
            reviewed = changed or entry.status == Entry.Status.HELD
            review_changed = reviewed and _apply_review(entry, reviewer.review(entry))
            if entry.status == Entry.Status.HELD:
                report.held += 1
                report.issues.append(
                    ParseIssue(f"{source.name} entry {item.key}", f"held for review: {describe(entry.review_flags)}")
                )
            if not changed and not review_changed and entry.indexed_hash == new_hash:
                report.unchanged += 1
            else:
                if entry.pk is None:
                    report.added += 1
                else:
                    report.updated += 1  # its content, or only its review (released, or held for another reason)
                entry.content_hash = new_hash
                entry.save()
                to_index.append(entry)
            if progress is not None and done % 50 == 0:
                progress(done, total)
        stale = [entry for key, entry in existing.items() if key not in seen]
        if stale and parsed.issues:
            report.issues.append(
                ParseIssue(source.name, f"{len(stale)} entries missing from this read were kept because it had errors")
            )
            stale = []
    index.remove_entries(kb, [entry.pk for entry in stale])
    Entry.objects.filter(pk__in=[entry.pk for entry in stale]).delete()
    report.removed = len(stale)
    for start in range(0, len(to_index), index.BATCH):
        index.index_entries(kb, to_index[start : start + index.BATCH])
        if progress is not None:
            progress(min(start + index.BATCH, len(to_index)), len(to_index))
    Source.objects.filter(pk=source.pk).update(items_done=total)
    return report


def _apply_review(entry: Entry, review: Review) -> bool:
    """Hold ``entry`` for what the review found, or release it when nothing is left; True when that changed it."""
    before = (entry.status, entry.review_flags, entry.duplicate_of_id, entry.duplicate_score)
    entry.review_flags = review.as_json()
    if review.flags:
        entry.status = Entry.Status.HELD
    elif entry.status == Entry.Status.HELD:
        entry.status = Entry.Status.PUBLISHED
    if review.duplicate_of is not None or before[0] == Entry.Status.HELD:
        entry.duplicate_of_id, entry.duplicate_score = review.duplicate_of, review.similarity
    return (entry.status, entry.review_flags, entry.duplicate_of_id, entry.duplicate_score) != before


def set_entry_enabled(entry: Entry, enabled: bool) -> None:
    """Disable (never answered again, at once) or re-enable an entry."""
    Entry.objects.filter(pk=entry.pk).update(enabled=enabled)
    entry.enabled = enabled
    index.index_entries(entry.knowledge_base, [entry])


def save_entry(entry: Entry) -> Entry:
    """Create or edit an entry by hand (admin) and index it at once."""
    if entry.status != Entry.Status.HELD:
        entry.review_flags = []  # they say why it is held; ops released it
    entry.content_hash = entry.compute_hash()
    entry.save()
    index.index_entries(entry.knowledge_base, [entry])
    return entry


def delete_entries(kb: KnowledgeBase, entry_ids: list[int]) -> None:
    index.remove_entries(kb, entry_ids)
    Entry.objects.filter(knowledge_base=kb, pk__in=entry_ids).delete()


DUPLICATE_SIMILARITY = 0.93  # cosine between question vectors above which a draft is flagged as a duplicate


def find_duplicate(kb: KnowledgeBase, question: str) -> tuple[Entry, float] | None:
    """The published entry whose question (or phrasing) is nearly the same as ``question``, if any."""
    from knowledge.embeddings import get_encoder

    vector = get_encoder().embed([question], is_query=True)[0]
    for hit in index.search(kb, vector, 10):
        if hit.kind in ("question", "phrasing") and hit.similarity >= DUPLICATE_SIMILARITY:
            entry = Entry.objects.filter(pk=int(hit.entry_id)).first()
            if entry is not None:
                return entry, hit.similarity
    return None


def manual_source(kb: KnowledgeBase, name: str = "Agent answers") -> Source:
    source, _ = Source.objects.get_or_create(knowledge_base=kb, name=name, defaults={"kind": Source.Kind.MANUAL})
    return source


def draft_entry(kb: KnowledgeBase, question: str, answer: str, language: str) -> Entry:
    """A draft FAQ entry for ops to review; flagged when an existing entry already asks the same."""
    source = manual_source(kb)
    entry = Entry(
        knowledge_base=kb,
        source=source,
        key=f"draft-{timezone.now():%Y%m%d%H%M%S%f}",
        question=question.strip(),
        answer=answer.strip(),
        language=language,
        status=Entry.Status.DRAFT,
    )
    duplicate = find_duplicate(kb, entry.question)
    if duplicate is not None:
        entry.duplicate_of, entry.duplicate_score = duplicate[0], round(duplicate[1], 4)
    entry.content_hash = entry.compute_hash()
    entry.save()
    return entry


def publish_entry(entry: Entry) -> Entry:
    """Publish a reviewed draft or held entry: it is indexed and answerable from the next message.

    A re-sync of unchanged content leaves it published; only new or changed content is checked again.
    """
    entry.status = Entry.Status.PUBLISHED
    entry.review_flags = []
    return save_entry(entry)
