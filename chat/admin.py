"""The agent side: the ticket queue, the conversation workspace, canned replies, and ops metrics.

Agents (group "agents") work tickets; ops (group "ops") see metrics and knowledge; a staff user
without a role sees nothing. Every working action is permission-checked in chat.admin_views and
recorded in Django's admin log (who, what, when).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import Case, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.expressions import Combinable
from django.http import HttpRequest
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from chat import admin_views
from chat.markdown import without_bidi_controls
from chat.models import CannedReply, Conversation, Message, Ticket


class AssigneeFilter(admin.SimpleListFilter):
    title = "assignee"
    parameter_name = "assignee"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("mine", "Mine"), ("unassigned", "Unassigned")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> QuerySet[Ticket]:
        if self.value() == "mine":
            return queryset.filter(claimed_by_id=request.user.pk)
        if self.value() == "unassigned":
            return queryset.filter(claimed_by__isnull=True)
        return queryset


class ActiveFilter(admin.SimpleListFilter):
    """The queue shows open and claimed tickets unless asked for others."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Waiting or with an agent"), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": (self.value() or "active") == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> QuerySet[Ticket]:
        if (self.value() or "active") == "active":
            return queryset.filter(status__in=[Ticket.Status.OPEN, Ticket.Status.CLAIMED])
        return queryset


class ReplyChannelFilter(admin.SimpleListFilter):
    """Ticket.by_email, titled so the sidebar does not read "By by email"."""

    title = "reply channel"
    parameter_name = "by_email"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("0", "In the chat"), ("1", "By e-mail (opened out of hours)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> QuerySet[Ticket]:
        if self.value() in ("0", "1"):
            return queryset.filter(by_email=self.value() == "1")
        return queryset


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """The queue: oldest first, stale ones highlighted, refreshed live by chat/static/chat/agent.js."""

    # One line per ticket at 1280 px: what it is, whose it is, how long it waited, then the text (cut to fit).
    list_display = (
        "ticket",
        "state",
        "owner",
        "waiting",
        "reason",
        "language",
        "customer",
        "last_message",
    )
    list_display_links = None
    list_filter = (ActiveFilter, AssigneeFilter, "status", "reason", "conversation__language", ReplyChannelFilter)
    ordering = ("created_at",)
    list_select_related = ("conversation", "claimed_by")
    list_per_page = 50
    search_fields = ("summary", "conversation__customer_email", "conversation__customer_name")
    show_full_result_count = False

    class Media:
        js = ("chat/agent.js",)
        css = {"all": ("chat/agent.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Ticket]:
        last = Message.objects.filter(
            conversation=OuterRef("conversation_id"), role__in=[Message.Role.CUSTOMER, Message.Role.AGENT]
        ).order_by("-id")
        waiting_first = Case(
            When(status=Ticket.Status.OPEN, then=Value(0)),
            When(status=Ticket.Status.CLAIMED, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
        # Not super().get_queryset(): it orders by get_ordering() before queue_rank exists.
        return (
            Ticket.objects.annotate(last_text=Subquery(last.values("text")[:1]), queue_rank=waiting_first)
            .select_related(*self.list_select_related)
            .order_by(*self.get_ordering(request))
        )

    def get_ordering(self, request: HttpRequest) -> list[str | Combinable]:
        """Waiting tickets first (oldest first), then those with an agent, then the rest."""
        return ["queue_rank", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tickets come from escalations only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="ticket", ordering="pk")
    def ticket(self, ticket: Ticket) -> str:
        url = reverse("admin:chat_conversation_work", args=[ticket.conversation_id])
        return format_html('<a href="{}" class="open-ticket">#{} open</a>', url, ticket.pk)

    @admin.display(description="waiting", ordering="created_at")
    def waiting(self, ticket: Ticket) -> str:
        minutes = ticket.waiting_minutes
        stale = ticket.status == Ticket.Status.OPEN and minutes >= settings.TICKET_STALE_MINUTES
        label = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
        return format_html('<span class="{}">{}</span>', "stale" if stale else "", label)

    @admin.display(description="status", ordering="queue_rank")
    def state(self, ticket: Ticket) -> str:
        return format_html('<span class="q-status {}">{}</span>', ticket.status, ticket.get_status_display())

    @admin.display(description="claimed by", ordering="claimed_by__username")
    def owner(self, ticket: Ticket) -> str:
        if ticket.claimed_by is None:
            return "—"
        return format_html("<bdi>{}</bdi>", ticket.claimed_by.first_name or ticket.claimed_by.get_username())

    @admin.display(description="lang", ordering="conversation__language")
    def language(self, ticket: Ticket) -> str:
        return ticket.conversation.language

    @admin.display(description="customer")
    def customer(self, ticket: Ticket) -> str:
        conversation = ticket.conversation
        who = conversation.customer_name or conversation.customer_email or "anonymous"
        title = " · ".join(filter(None, [conversation.customer_name, conversation.customer_email]))
        return format_html('<bdi title="{}">{}</bdi>', title, without_bidi_controls(who)[:60])

    @admin.display(description="last message")
    def last_message(self, ticket: Ticket) -> str:
        text = without_bidi_controls(getattr(ticket, "last_text", "") or "")
        return format_html('<bdi dir="auto" title="{}">{}</bdi>', text[:300], text[:160])

    def get_urls(self) -> list[URLPattern]:
        return [
            path("live/", self.admin_site.admin_view(admin_views.queue_counts), name="chat_ticket_live"),
            path("metrics/", self.admin_site.admin_view(admin_views.metrics), name="chat_metrics"),
            *super().get_urls(),
        ]


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("created_at", "role", "author", "text", "confidence", "feedback")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "language", "assignee", "channel", "created_at", "workspace")
    list_filter = ("status", "language", "channel", "knowledge_base")
    search_fields = ("customer_name", "customer_email", "customer_ref", "id")
    readonly_fields = (
        "id",
        "knowledge_base",
        "channel",
        "language",
        "status",
        "assignee",
        "customer_name",
        "customer_email",
        "customer_ref",
        "page_url",
        "created_at",
        "updated_at",
    )
    exclude = ("token_hash",)
    inlines = (MessageInline,)
    list_select_related = ("assignee",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="")
    def workspace(self, conversation: Conversation) -> str:
        url = reverse("admin:chat_conversation_work", args=[conversation.pk])
        return format_html('<a href="{}">Open workspace</a>', url)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<uuid:conversation_id>/work/",
                self.admin_site.admin_view(admin_views.workspace),
                name="chat_conversation_work",
            ),
            path(
                "<uuid:conversation_id>/poll/",
                self.admin_site.admin_view(admin_views.poll),
                name="chat_conversation_poll",
            ),
            *super().get_urls(),
        ]


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ("title", "language", "created_at")
    list_filter = ("language",)
    search_fields = ("title", "text")


def waiting_counts() -> dict[str, int]:
    stale_before = timezone.now() - timedelta(minutes=settings.TICKET_STALE_MINUTES)
    open_tickets = Ticket.objects.filter(status=Ticket.Status.OPEN)
    return {
        "waiting": open_tickets.count(),
        "stale": open_tickets.filter(created_at__lt=stale_before).count(),
        "with_agent": Ticket.objects.filter(status=Ticket.Status.CLAIMED).count(),
    }
