"""Views of the agent workspace and ops metrics inside the admin. Thin: check permission, call actions, audit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.admin import site
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Model, OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse

from chat import actions, push
from chat import metrics as support_metrics
from chat.api import EVENTS_HEARTBEAT_S, EVENTS_POLL_S, EVENTS_WINDOW_S, sse_response, wants_stream
from chat.errors import ChatError
from chat.models import CannedReply, Conversation, Message, Ticket
from chat.schemas import OtherChoice
from chat.serializers import choices_dict, message_dict
from knowledge.models import Entry

WORK_PERMISSION = "chat.change_ticket"
STREAM_RETRY_MS = 1000  # the browser's EventSource reconnects this long after a stream ends or breaks


def audit(request: HttpRequest, obj: Model, message: str) -> None:
    assert request.user.pk is not None  # admin views only run for logged-in staff
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=[obj],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _staff_message(message: Message) -> dict[str, Any]:
    data = message_dict(message)
    data["decision"] = message.decision
    data["is_note"] = message.role == Message.Role.NOTE
    data["choices_seen"] = choices_seen(message)
    return data


def choices_seen(message: Message) -> dict[str, Any] | None:
    """For a turn that offered choices: what was offered (the picked one marked) and what the customer did."""
    choices = choices_dict(message)
    if choices is None:
        return None
    picked = choices["picked"]
    offered = [{**option, "picked": option["id"] == picked} for option in choices["offered"]]
    titles = {option["id"]: option["title"] for option in offered}
    outcome = {
        None: "Not picked yet",
        OtherChoice.NONE: "None of these (handed over)",
        OtherChoice.PERSON: "Talk to a person (handed over)",
    }.get(picked) or f"Picked “{titles.get(picked, picked)}”"
    return {"offered": offered, "outcome": outcome, "picked": picked}


def workspace(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    """The conversation for an agent. Its script works it in place: a POST or ``?partial=1`` asked for by fetch
    (header ``X-Requested-With: fetch``) answers with JSON holding the parts of the page that changed."""
    _require(request, "chat.view_conversation")
    in_place = request.headers.get("X-Requested-With") == "fetch"
    if request.method == "POST":
        _require(request, WORK_PERMISSION)
        conversation = get_object_or_404(Conversation, pk=conversation_id)
        _act(request, conversation)
        if not in_place:
            return HttpResponseRedirect(reverse("admin:chat_conversation_work", args=[conversation.pk]))
    conversation = get_object_or_404(
        Conversation.objects.select_related("assignee", "knowledge_base"), pk=conversation_id
    )
    if in_place:
        return JsonResponse(_parts(request, conversation))
    history = list(conversation.messages.select_related("author", "entry").order_by("id"))
    context = {
        **site.each_context(request),
        **_context(request, conversation),
        "title": f"Conversation {conversation}",
        "history": [(message, choices_seen(message)) for message in history],
        "last_id": max((m.pk for m in history), default=0),
        "opts": Conversation._meta,
    }
    return render(request, "admin/chat/workspace.html", context)


def _context(request: HttpRequest, conversation: Conversation) -> dict[str, Any]:
    past, can_match = past_conversations(conversation)
    page_url = conversation.page_url if conversation.page_url.lower().startswith(("http://", "https://")) else ""
    return {
        "conversation": conversation,
        "ticket": conversation.tickets.order_by("-created_at").first(),
        "canned": CannedReply.objects.filter(language__in=["", conversation.language]),
        "can_work": request.user.has_perm(WORK_PERMISSION),
        "is_mine": conversation.assignee_id == request.user.pk,
        "past": past,
        "can_match_past": can_match,
        "page_url": page_url,
    }


def past_conversations(conversation: Conversation, limit: int = 10) -> tuple[list[Conversation], bool]:
    """The customer's other conversations, newest first: by the host-verified user id, else by e-mail. A name is
    not enough (two customers share one), and a typed e-mail only finds conversations with that same e-mail."""
    if conversation.identity_verified and conversation.customer_ref:
        match = Q(identity_verified=True, customer_ref=conversation.customer_ref)
    elif conversation.customer_email:
        match = Q(customer_email__iexact=conversation.customer_email)
    else:
        return [], False
    first_text = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.CUSTOMER).order_by("id")
    past = (
        Conversation.objects.filter(match, knowledge_base_id=conversation.knowledge_base_id)
        .exclude(pk=conversation.pk)
        .annotate(first_text=Subquery(first_text.values("text")[:1]))
        .order_by("-created_at")[:limit]
    )
    return list(past), True


def _parts(request: HttpRequest, conversation: Conversation) -> dict[str, Any]:
    """What the workspace script redraws: the messages after ``after``, the header, ticket, customer and actions,
    and what the last action said (Django's messages, as [{level, text}])."""
    try:
        after = int(request.POST.get("after") or request.GET.get("after") or 0)
    except ValueError:
        after = 0
    context = _context(request, conversation)
    fresh = list(conversation.messages.filter(id__gt=after).select_related("author", "entry").order_by("id"))
    history = "".join(
        render_to_string("admin/chat/_ws_message.html", {**context, "m": m, "offer": choices_seen(m)}, request)
        for m in fresh
    )

    def part(name: str) -> str:
        return render_to_string(f"admin/chat/_ws_{name}.html", context, request)

    return {
        "status": conversation.status,
        "status_label": conversation.get_status_display(),
        "assignee": conversation.assignee.get_username() if conversation.assignee else None,
        "last_id": max((m.pk for m in fresh), default=after),
        "history": history,
        "customer_wrote": sum(1 for m in fresh if m.role == Message.Role.CUSTOMER),
        "header": part("header"),
        "ticket": part("ticket"),
        "customer": part("customer"),
        "actions": part("actions"),
        "notices": [{"level": m.level_tag, "text": str(m.message)} for m in messages.get_messages(request)],
    }


def _number(value: str | None) -> int:
    """An id from a form: anything that is not a number is no id (0 matches nothing), never a server error."""
    return int(value) if value and value.isdigit() else 0


def _act(request: HttpRequest, conversation: Conversation) -> None:
    op = request.POST.get("op", "")
    user = request.user
    assert isinstance(user, User)
    try:
        if op == "claim":
            ticket = get_object_or_404(Ticket, pk=_number(request.POST.get("ticket")), conversation=conversation)
            actions.claim(ticket, user)
            audit(request, conversation, f"Took over ticket #{ticket.pk}")
            messages.success(request, "You have this conversation now; the bot is silent.")
        elif op == "reply":
            actions.agent_reply(conversation, user, request.POST.get("text", ""))
            audit(request, conversation, "Replied to the customer")
        elif op == "note":
            actions.add_note(conversation, user, request.POST.get("text", ""))
            audit(request, conversation, "Added an internal note")
        elif op == "release":
            actions.release(conversation, user)
            audit(request, conversation, "Released back to the queue")
            messages.info(request, "Back in the queue.")
        elif op == "handback":
            pending = actions.hand_back(conversation, user)
            audit(request, conversation, "Handed back to the bot")
            answered = " It has answered the customer's last message." if pending else ""
            messages.info(request, f"The bot answers this customer again.{answered}")
        elif op == "resolve":
            actions.resolve(conversation, user)
            audit(request, conversation, "Resolved")
            messages.success(request, "Resolved.")
        elif op == "draft":
            entry = actions.draft_entry_from_reply(conversation, _number(request.POST.get("message")))
            audit(request, conversation, f"Drafted FAQ entry #{entry.pk}")
            note = (
                f" It looks like entry #{entry.duplicate_of_id} ({entry.duplicate_score:.2f}); ops will check."
                if entry.duplicate_of_id
                else ""
            )
            messages.success(request, f"Draft FAQ entry #{entry.pk} created for ops to review.{note}")
        else:
            messages.error(request, "Unknown action.")
    except ChatError as exc:
        messages.error(request, exc.message)


def poll(request: HttpRequest, conversation_id: UUID) -> HttpResponseBase:
    """New messages (notes included) and the status, for the workspace's live view: one JSON snapshot, or with
    ``Accept: text/event-stream`` a stream pushed as they are stored, resuming after ``after`` or Last-Event-ID."""
    _require(request, "chat.view_conversation")
    conversation = get_object_or_404(Conversation, pk=conversation_id)
    after = max(_cursor(request.GET.get("after")), _cursor(request.headers.get("Last-Event-ID")))
    if wants_stream(request):
        return sse_response(_workspace_events(_WorkspaceNews(conversation.pk, after)))
    fresh = conversation.messages.filter(id__gt=after).select_related("author").order_by("id")
    return JsonResponse(
        {
            "status": conversation.status,
            "assignee": conversation.assignee.get_username() if conversation.assignee else None,
            "messages": [_staff_message(m) for m in fresh],
        }
    )


def queue_counts(request: HttpRequest) -> HttpResponseBase:
    """How many tickets wait (and the newest ticket's id), for the queue page: one JSON snapshot, or with
    ``Accept: text/event-stream`` a ``counts`` event now and whenever a ticket is opened, claimed or closed."""
    _require(request, "chat.view_ticket")
    if wants_stream(request):
        return sse_response(_queue_events())
    return JsonResponse(_queue_snapshot())


def _cursor(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def _event(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One SSE event; an id makes the browser's EventSource resume after it (Last-Event-ID)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class _WorkspaceNews:
    """What a workspace stream has sent so far, and the read that finds what it has not."""

    def __init__(self, conversation_id: UUID, after: int) -> None:
        self.conversation_id = conversation_id
        self.last_id = after
        self.state: tuple[str, str | None] | None = None

    def read(self) -> list[bytes]:
        out = []
        fresh = Message.objects.filter(conversation_id=self.conversation_id, id__gt=self.last_id)
        for message in fresh.select_related("author").order_by("id"):
            self.last_id = message.pk
            out.append(_event("message", _staff_message(message), message.pk))
        state = Conversation.objects.filter(pk=self.conversation_id).values_list("status", "assignee__username").first()
        if state is not None and state != self.state:
            self.state = state
            out.append(_event("status", {"status": state[0], "assignee": state[1]}))
        return out


async def _workspace_events(news: _WorkspaceNews) -> AsyncIterator[bytes]:
    yield f"retry: {STREAM_RETRY_MS}\n\n".encode()
    topics = [push.conversation_topic(news.conversation_id)]
    async for woken in push.watch(
        topics, window_s=EVENTS_WINDOW_S, heartbeat_s=EVENTS_HEARTBEAT_S, poll_s=EVENTS_POLL_S
    ):
        if woken is None:
            yield b": keepalive\n\n"
            continue
        for chunk in await push.read(news.read):
            yield chunk


def _queue_snapshot() -> dict[str, int]:
    from chat.admin import waiting_counts

    newest = Ticket.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    return {**waiting_counts(), "newest": newest}


async def _queue_events() -> AsyncIterator[bytes]:
    yield f"retry: {STREAM_RETRY_MS}\n\n".encode()
    sent: dict[str, int] | None = None
    async for woken in push.watch(
        [push.QUEUE], window_s=EVENTS_WINDOW_S, heartbeat_s=EVENTS_HEARTBEAT_S, poll_s=EVENTS_POLL_S
    ):
        if woken is None:
            yield b": keepalive\n\n"
            continue
        counts = await push.read(_queue_snapshot)
        if counts != sent:
            sent = counts
            yield _event("counts", counts)


def metrics(request: HttpRequest) -> HttpResponse:
    _require(request, "chat.view_metrics")
    try:
        days = max(1, min(int(request.GET.get("days", "30")), 365))
    except ValueError:
        days = 30
    context = {
        **site.each_context(request),
        "title": "Support metrics",
        "days": days,
        "figures": support_metrics.compute(days),
        "drafts": Entry.objects.filter(status=Entry.Status.DRAFT).count(),
    }
    return render(request, "admin/chat/metrics.html", context)
