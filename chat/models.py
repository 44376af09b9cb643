"""Conversations with customers, their messages, and the tickets escalations open for agents."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from knowledge.models import KnowledgeBase
from knowledge.vocabulary import HandoverReason


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Conversation(models.Model):
    """One customer's chat. Exactly one owner at a time: the bot, the queue, or one agent."""

    class Status(models.TextChoices):
        BOT = "bot", "With the bot"
        WAITING = "waiting_for_agent", "Waiting for an agent"
        WITH_AGENT = "with_agent", "With an agent"
        RESOLVED = "resolved", "Resolved"

    class Channel(models.TextChoices):
        WIDGET = "widget", "Web widget"
        API = "api", "API"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.PROTECT, related_name="conversations")
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.WIDGET)
    language = models.CharField(max_length=8, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.BOT)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    customer_name = models.CharField(max_length=200, blank=True)
    customer_email = models.EmailField(blank=True)
    customer_ref = models.CharField(max_length=200, blank=True, help_text="The host site's id for this customer.")
    identity_verified = models.BooleanField(
        default=False,
        help_text="customer_ref and customer_email were signed by the host site (CHAT_IDENTITY_SECRET).",
    )
    page_url = models.URLField(max_length=1000, blank=True)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.customer_name or 'Customer'} ({str(self.id)[:8]})"

    def issue_token(self) -> str:
        """A new secret for this conversation; only its hash is kept."""
        token = secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        return token

    def token_matches(self, token: str) -> bool:
        return bool(token) and secrets.compare_digest(self.token_hash, hash_token(token))


class Message(models.Model):
    class Role(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        BOT = "bot", "Bot"
        AGENT = "agent", "Agent"
        SYSTEM = "system", "System"
        NOTE = "note", "Internal note"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    client_id = models.CharField(
        max_length=64, blank=True, help_text="The widget's id, so a retry is not stored twice."
    )
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    sources = models.JSONField(default=list, blank=True)
    entry = models.ForeignKey("knowledge.Entry", null=True, blank=True, on_delete=models.SET_NULL)
    confidence = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    model_used = models.CharField(max_length=200, blank=True)
    decision = models.JSONField(default=dict, blank=True, help_text="What routing saw: candidates, scores, reason.")
    feedback = models.SmallIntegerField(null=True, blank=True, choices=[(1, "Helpful"), (-1, "Not helpful")])
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["conversation", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~models.Q(client_id=""),
                name="unique_client_message_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class Ticket(models.Model):
    """An escalation: the conversation waits for a person, with what the bot knew."""

    Reason = HandoverReason

    class Status(models.TextChoices):
        OPEN = "open", "Waiting"
        CLAIMED = "claimed", "With an agent"
        RESOLVED = "resolved", "Resolved"
        RELEASED = "released", "Handed back to the bot"
        WITHDRAWN = "withdrawn", "Closed by the customer"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="tickets")
    reason = models.CharField(max_length=20, choices=HandoverReason.choices())
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    confidence = models.FloatField(null=True, blank=True)
    summary = models.TextField(blank=True)
    candidates = models.JSONField(default=list, blank=True)
    trigger_message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    by_email = models.BooleanField(default=False, help_text="Opened outside business hours: answer by e-mail.")
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    csat = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="The customer's satisfaction with how the ticket was resolved, 1-5.",
    )
    csat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        permissions = [("view_metrics", "Can see support metrics")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_reason_display()}"

    @property
    def waiting_minutes(self) -> float:
        end = self.claimed_at or timezone.now()
        return (end - self.created_at).total_seconds() / 60


class CannedReply(models.Model):
    """A ready-made answer agents can insert and adapt."""

    title = models.CharField(max_length=200)
    text = models.TextField()
    language = models.CharField(max_length=8, blank=True, choices=settings.LANGUAGES)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return self.title
