"""What a company knows: knowledge bases, their sources, the entries those yield, and routing versions.

The database is the source of truth; the Chroma collection of a knowledge base is an index of its
enabled, published entries that can always be rebuilt from these rows. Drafts and entries held for
review by the ingestion checks (``knowledge.integrity``) are neither indexed nor answered.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class KnowledgeBase(models.Model):
    """One company or brand. Each has its own index and its own routing version."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    default_language = models.CharField(max_length=8, default="es", choices=settings.LANGUAGES)
    # What the current index was built with; a different setting means a clean rebuild.
    index_embedding_model = models.CharField(max_length=300, blank=True)
    # The EMBEDDING_MODEL spec this knowledge base's index and messages use: its active routing version's
    # encoder (a fine-tuned file), switched together with the version; blank = the deployment's EMBEDDING_MODEL.
    encoder = models.CharField(max_length=500, blank=True)
    index_generation = models.PositiveIntegerField(default=0)
    # Bumped on every write to the index, so every process knows when its in-memory copy is stale.
    index_revision = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def collection_name(self) -> str:
        digest = hashlib.sha1(self.index_embedding_model.encode(), usedforsecurity=False).hexdigest()[:8]
        return f"kb-{self.slug}-{digest}-g{self.index_generation}"


class Source(models.Model):
    """A file, URL/sitemap, or the admin itself ("manual"), from which entries come."""

    class Kind(models.TextChoices):
        FILE = "file", "File"
        URL = "url", "URL or sitemap"
        MANUAL = "manual", "Written in the admin"

    class Status(models.TextChoices):
        NEW = "new", "Not synced yet"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Syncing"
        OK = "ok", "Synced"
        PARTIAL = "partial", "Synced with errors"
        FAILED = "failed", "Failed"

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FILE)
    upload = models.FileField(upload_to="sources/%Y/%m/", blank=True)
    location = models.CharField(max_length=1000, blank=True, help_text="A path on the server, or a URL to crawl.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    items_total = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    held = models.PositiveIntegerField(default=0, help_text="Entries held for review after the last sync.")
    issues = models.JSONField(default=list, blank=True, help_text="Per-item problems of the last sync.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["knowledge_base", "name"]
        constraints = [
            models.UniqueConstraint(fields=["knowledge_base", "name"], name="unique_source_name_per_kb"),
        ]

    def __str__(self) -> str:
        return self.name


class EntryQuerySet(models.QuerySet["Entry"]):
    def answerable(self) -> EntryQuerySet:
        return self.filter(enabled=True, status=Entry.Status.PUBLISHED)


class Entry(models.Model):
    """A FAQ entry (question + vetted answer) or a chunk of a help document."""

    class Kind(models.TextChoices):
        FAQ = "faq", "FAQ entry"
        CHUNK = "chunk", "Document chunk"

    class Status(models.TextChoices):
        PUBLISHED = "published", "Published"
        DRAFT = "draft", "Draft (review before publishing)"
        HELD = "held", "Held for review (ingestion checks)"

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="entries")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="entries")
    key = models.CharField(max_length=300, help_text="Stable id within the source (the FAQ id, or doc#chunk).")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FAQ)
    question = models.TextField(help_text="The question, or the section title of a document chunk.")
    answer = models.TextField(help_text="The vetted answer, or the chunk text.")
    language = models.CharField(max_length=8, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    phrasings = models.JSONField(default=list, blank=True, help_text="Other ways customers ask this.")
    translations = models.JSONField(
        default=dict, blank=True, help_text='Other languages: {"en": {"question": "...", "answer": "..."}}'
    )
    enabled = models.BooleanField(default=True, help_text="Disabled entries are never answered.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PUBLISHED)
    review_flags = models.JSONField(
        default=list,
        blank=True,
        help_text='Why ingestion held it: [{"rule": "markup", "message": "..."}]; cleared when ops publish it.',
    )
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, help_text="A draft too similar to this entry."
    )
    duplicate_score = models.FloatField(null=True, blank=True)
    content_hash = models.CharField(max_length=64, editable=False)
    indexed_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "entries"
        ordering = ["knowledge_base", "source", "key"]
        constraints = [
            models.UniqueConstraint(fields=["source", "key"], name="unique_entry_key_per_source"),
        ]
        indexes = [models.Index(fields=["knowledge_base", "enabled", "status"])]

    def __str__(self) -> str:
        return self.question[:80]

    def compute_hash(self) -> str:
        """Everything that changes what is indexed or answered; equal hashes mean nothing to do."""
        payload = [self.kind, self.question, self.answer, self.language, self.url, self.phrasings, self.translations]
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    def answer_in(self, language: str) -> tuple[str, str]:
        """(question, answer) in ``language`` when the entry has that version, else the original."""
        if language and language != self.language:
            version: dict[str, Any] = self.translations.get(language) or {}
            if version.get("answer"):
                return str(version.get("question") or self.question), str(version["answer"])
        return self.question, self.answer


class Example(models.Model):
    """A labelled customer phrasing: it asks for ``entry``, or for nothing we cover (entry is None).

    Examples come from an examples file (`evaluate --examples`, `ingest-examples`) or from the learning
    loop (confirmed conversations). In-scope ones are indexed as extra phrasings of their entry; all of
    them train the routing model's head.
    """

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="examples")
    entry = models.ForeignKey(Entry, null=True, blank=True, on_delete=models.CASCADE, related_name="examples")
    text = models.TextField()
    origin = models.CharField(max_length=50, default="file", help_text="file, conversation, agent, ...")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["knowledge_base", "id"]
        constraints = [
            models.UniqueConstraint(fields=["knowledge_base", "entry", "text"], name="unique_example_text"),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class RoutingVersion(models.Model):
    """A trained and calibrated routing model of one knowledge base; exactly one is active."""

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="routing_versions")
    number = models.PositiveIntegerField()
    is_active = models.BooleanField(default=False)
    model = models.JSONField(help_text="RoutingModel.to_dict(): head weights, calibrator, threshold.")
    encoder = models.CharField(
        max_length=500,
        blank=True,
        help_text="The EMBEDDING_MODEL spec this version was trained for (a fine-tuned encoder file); "
        "blank = the deployment's EMBEDDING_MODEL.",
    )
    metrics = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["knowledge_base", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["knowledge_base", "number"], name="unique_routing_version_number"),
            models.UniqueConstraint(
                fields=["knowledge_base"], condition=models.Q(is_active=True), name="one_active_routing_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.knowledge_base.slug} v{self.number}{' (active)' if self.is_active else ''}"
