"""Views of the agent workspace and ops metrics inside the admin. Thin: check permission, call actions, audit."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.admin import site
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from chat import actions
from chat import metrics as support_metrics
from chat.errors import ChatError
from chat.models import CannedReply, Conversation, Message, Ticket
from chat.schemas import OtherChoice
from chat.serializers import choices_dict, message_dict
from knowledge.models import Entry

WORK_PERMISSION = "chat.change_ticket"


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
    _require(request, "chat.view_conversation")
    conversation = get_object_or_404(
        Conversation.objects.select_related("assignee", "knowledge_base"), pk=conversation_id
    )
    if request.method == "POST":
        _require(request, WORK_PERMISSION)
        _act(request, conversation)
        return HttpResponseRedirect(reverse("admin:chat_conversation_work", args=[conversation.pk]))
    ticket = conversation.tickets.order_by("-created_at").first()
    history = list(conversation.messages.select_related("author", "entry").order_by("id"))
    context = {
        **site.each_context(request),
        "title": f"Conversation {conversation}",
        "conversation": conversation,
        "ticket": ticket,
        "history": [(message, choices_seen(message)) for message in history],
        "last_id": max((m.pk for m in history), default=0),
        "canned": CannedReply.objects.filter(language__in=["", conversation.language]),
        "can_work": request.user.has_perm(WORK_PERMISSION),
        "is_mine": conversation.assignee_id == request.user.pk,
        "opts": Conversation._meta,
    }
    return render(request, "admin/chat/workspace.html", context)


def _act(request: HttpRequest, conversation: Conversation) -> None:
    op = request.POST.get("op", "")
    user = request.user
    assert isinstance(user, User)
    try:
        if op == "claim":
            ticket = get_object_or_404(Ticket, pk=request.POST.get("ticket"), conversation=conversation)
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
            actions.hand_back(conversation, user)
            audit(request, conversation, "Handed back to the bot")
            messages.info(request, "The bot answers this customer again.")
        elif op == "resolve":
            actions.resolve(conversation, user)
            audit(request, conversation, "Resolved")
            messages.success(request, "Resolved.")
        elif op == "draft":
            entry = actions.draft_entry_from_reply(conversation, int(request.POST.get("message", "0")))
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


def poll(request: HttpRequest, conversation_id: UUID) -> JsonResponse:
    """New messages (notes included) and the status, for the workspace's live view."""
    _require(request, "chat.view_conversation")
    conversation = get_object_or_404(Conversation, pk=conversation_id)
    after = int(request.GET.get("after", "0") or 0)
    fresh = conversation.messages.filter(id__gt=after).select_related("author").order_by("id")
    return JsonResponse(
        {
            "status": conversation.status,
            "assignee": conversation.assignee.get_username() if conversation.assignee else None,
            "messages": [_staff_message(m) for m in fresh],
        }
    )


def queue_counts(request: HttpRequest) -> JsonResponse:
    _require(request, "chat.view_ticket")
    from chat.admin import waiting_counts

    newest = Ticket.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    return JsonResponse({**waiting_counts(), "newest": newest})


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
