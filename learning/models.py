"""The learning loop's data: redacted turn logs, the labelled examples derived from them, and retraining jobs.

Nothing here holds personal data in clear: texts are redacted before they are stored, and the customer
is known only by keyed hashes of their e-mail and host-site id (so that erasure can find them).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from chat.models import Conversation, Message
from knowledge.models import Entry, KnowledgeBase, RoutingVersion


class Split(models.TextChoices):
    """Which use a conversation's data has, fixed by a hash of its id (see ``learning.labels.split_for``)."""

    TRAIN = "train", "Training"
    CALIBRATION = "calibration", "Calibration"
    HOLDOUT = "holdout", "Held out for the gate"


class TurnLog(models.Model):
    """One customer message and what followed: the bot's decision and answer, feedback, escalation, resolution."""

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="turn_logs")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turn_logs")
    question = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="turn_log")
    reply = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField(help_text="The customer's message, redacted.")
    reply_text = models.TextField(blank=True, help_text="The bot's answer or the escalation notice, redacted.")
    language = models.CharField(max_length=8, blank=True)
    decision_reason = models.CharField(max_length=30, blank=True)
    candidates = models.JSONField(default=list, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    entry = models.ForeignKey(
        Entry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="The entry answered."
    )
    latency_ms = models.FloatField(null=True, blank=True)
    routing_version = models.PositiveIntegerField(null=True, blank=True)
    model_used = models.CharField(max_length=200, blank=True)
    embedding_model = models.CharField(max_length=300, blank=True)
    feedback = models.SmallIntegerField(null=True, blank=True)
    follow_up = models.BooleanField(default=False, help_text="The customer wrote again after this turn.")
    escalated = models.BooleanField(default=False)
    escalation_reason = models.CharField(max_length=30, blank=True)
    resolution_text = models.TextField(blank=True, help_text="What the agent answered, redacted.")
    resolution_entry = models.ForeignKey(
        Entry,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The entry that answers this question, as an agent or a replay confirmed it.",
    )
    confirmed_out_of_scope = models.BooleanField(default=False, help_text="Confirmed: no entry covers this.")
    resolved = models.BooleanField(default=False)
    split = models.CharField(max_length=12, choices=Split.choices, default=Split.TRAIN)
    customer_email_hash = models.CharField(max_length=64, blank=True, db_index=True)
    customer_ref_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, help_text="When the customer wrote.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["knowledge_base", "created_at"])]

    def __str__(self) -> str:
        return self.text[:80]


class LabelledExample(models.Model):
    """A (question, entry) label derived from a turn, with where it came from; ops can correct it."""

    class Kind(models.TextChoices):
        POSITIVE = "positive", "Right entry"
        NEGATIVE = "negative", "Wrong entry"
        OUT_OF_SCOPE = "out_of_scope", "Out of scope"

    class Rule(models.TextChoices):
        POSITIVE_FEEDBACK = "positive_feedback", "Answer marked helpful"
        CHOICE_PICKED = "choice_picked", "Customer picked an offered answer"
        NO_FOLLOW_UP = "no_follow_up", "Answer without follow-up"
        NEGATIVE_FEEDBACK = "negative_feedback", "Answer marked not helpful"
        ESCALATED_AFTER_ANSWER = "escalated_after_answer", "Escalated after an answer"
        CORRECTED_ANSWER = "corrected_answer", "Answer corrected (another entry, or none)"
        AGENT_RESOLUTION = "agent_resolution", "Agent resolution linked to an entry"
        PUBLISHED_DRAFT = "published_draft", "Agent's answer published as an entry"
        UNCOVERED = "uncovered", "Escalated, no entry covers it"
        MANUAL = "manual", "Added by ops"

    class Status(models.TextChoices):
        AUTO = "auto", "Derived"
        CONFIRMED = "confirmed", "Confirmed by ops"
        CORRECTED = "corrected", "Corrected by ops"
        REJECTED = "rejected", "Rejected by ops"

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="labelled_examples")
    turn = models.ForeignKey(TurnLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels")
    conversation_id = models.UUIDField(null=True, blank=True, db_index=True)
    text = models.TextField(help_text="The customer's question, redacted.")
    language = models.CharField(max_length=8, blank=True)
    kind = models.CharField(max_length=15, choices=Kind.choices)
    entry = models.ForeignKey(Entry, null=True, blank=True, on_delete=models.CASCADE, related_name="labels")
    rule = models.CharField(max_length=25, choices=Rule.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.AUTO)
    split = models.CharField(max_length=12, choices=Split.choices, default=Split.TRAIN)
    customer_email_hash = models.CharField(max_length=64, blank=True, db_index=True)
    customer_ref_hash = models.CharField(max_length=64, blank=True, db_index=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "rule"], name="one_label_per_turn_and_rule"),
            models.CheckConstraint(
                condition=models.Q(kind="out_of_scope", entry__isnull=True)
                | (~models.Q(kind="out_of_scope") & models.Q(entry__isnull=False)),
                name="label_entry_matches_kind",
            ),
        ]
        indexes = [models.Index(fields=["knowledge_base", "split", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.text[:60]}"


class RetrainingJob(models.Model):
    """One run of retraining for a knowledge base: what triggered it, its data window, progress and outcome."""

    class Trigger(models.TextChoices):
        ADMIN = "admin", "Admin (“Retrain now”)"
        COMMAND = "command", "manage.py retrain"
        SCHEDULE = "schedule", "Schedule"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PROMOTED = "promoted", "Promoted"
        REFUSED = "refused", "Refused by the gate"
        SKIPPED = "skipped", "Skipped (not enough new examples)"
        FAILED = "failed", "Failed"

    FINISHED = (Status.PROMOTED, Status.REFUSED, Status.SKIPPED)

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="retraining_jobs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    triggered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    stage = models.CharField(max_length=100, blank=True)
    window_start = models.DateTimeField(null=True, blank=True, help_text="Examples after this are new.")
    window_end = models.DateTimeField(default=timezone.now, help_text="Nothing logged after this is used.")
    candidate = models.ForeignKey(
        RoutingVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="retraining_jobs"
    )
    baseline_version = models.PositiveIntegerField(null=True, blank=True, help_text="The live version it faced.")
    metrics = models.JSONField(default=dict, blank=True)
    artefacts = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When it was last handed to a worker.")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The running worker's last sign of life; without one for LEARNING_JOB_STALE_MINUTES it is stale.",
    )
    worker = models.CharField(max_length=200, blank=True, help_text="Host and process id that ran it last.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["knowledge_base"], condition=models.Q(status="running"), name="one_running_job_per_kb"
            ),
        ]

    def __str__(self) -> str:
        return f"Retraining #{self.pk} of {self.knowledge_base.slug} ({self.status})"
