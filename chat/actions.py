"""Everything that changes a conversation. Views, the admin, commands and tasks call these.

A conversation has one owner at a time, changed only here: the bot (status ``bot``), the queue
(``waiting_for_agent``), one agent (``with_agent``), or nobody (``resolved``). The bot only
answers in ``bot``; claims use a conditional UPDATE so two agents can never both win.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chat import hours
from chat.errors import ChatError, Conflict, InvalidRequest, NotFound, TooLarge, Unauthorized
from chat.models import Conversation, Message, Ticket
from chat.schemas import OtherChoice, StartConversation
from chat.texts import text as say
from knowledge.language import detect_language
from knowledge.models import Entry, KnowledgeBase
from knowledge.vocabulary import HandoverReason, Outcome

if TYPE_CHECKING:
    from knowledge.routing import Decision

logger = logging.getLogger(__name__)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


# --- customers -----------------------------------------------------------------------------------
def start_conversation(data: StartConversation) -> tuple[Conversation, str]:
    kb = KnowledgeBase.objects.filter(slug=data.kb).first()
    if kb is None:
        raise NotFound(f"There is no knowledge base called {data.kb!r}.")
    conversation = Conversation(
        knowledge_base=kb,
        language=data.language or "",
        page_url=data.page_url,
        customer_name=data.customer_name,
        customer_email=data.customer_email,
        customer_ref=data.customer_ref,
    )
    token = conversation.issue_token()
    conversation.save()
    return conversation, token


def authorised_conversation(conversation_id: str | uuid.UUID, token: str) -> Conversation:
    """The conversation, if ``token`` is its secret; another customer's id looks like an unknown one."""
    if not token:
        raise Unauthorized("This request needs the conversation's token (Authorization: Bearer …).")
    conversation = Conversation.objects.select_related("knowledge_base").filter(pk=conversation_id).first()
    if conversation is None or not conversation.token_matches(token):
        raise NotFound("No such conversation.")
    return conversation


def add_customer_message(conversation: Conversation, text: str, client_id: str = "") -> tuple[Message, bool]:
    """Store the customer's message first (nothing after this can lose it). A retry returns the stored one."""
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise TooLarge(
            f"Messages can be at most {settings.CHAT_MAX_MESSAGE_CHARS} characters (this one has {len(text)})."
        )
    if "\x00" in text:
        raise InvalidRequest("The message contains a NUL character.")
    if client_id:
        existing = conversation.messages.filter(client_id=client_id).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation=conversation, role=Message.Role.CUSTOMER, text=text, client_id=client_id
            )
            updates: dict[str, Any] = {"updated_at": timezone.now()}
            language = detect_language(text)
            if language and language != conversation.language:
                updates["language"] = conversation.language = language
            if conversation.status == Conversation.Status.RESOLVED:
                updates["status"] = conversation.status = Conversation.Status.BOT
            if not conversation.customer_email and (email := _email_in(text)):
                updates["customer_email"] = conversation.customer_email = email
            Conversation.objects.filter(pk=conversation.pk).update(**updates)
    except IntegrityError:  # the same client_id raced in twice: the first one stands
        return conversation.messages.get(client_id=client_id), False
    return message, True


def _email_in(text: str) -> str:
    """The first valid e-mail address in a message (customers leave one for an e-mail reply), or ""."""
    for found in _EMAIL.finditer(text):
        candidate = found.group(0)
        try:
            validate_email(candidate)
        except ValidationError:
            continue
        if len(candidate) <= 254:
            return candidate
    return ""


def language_of(conversation: Conversation) -> str:
    return conversation.language or conversation.knowledge_base.default_language


def record_bot_message(
    conversation: Conversation,
    reply_to: Message,
    text: str,
    *,
    decision: dict[str, Any],
    sources: list[dict[str, Any]] | None = None,
    entry_id: int | None = None,
    confidence: float | None = None,
    latency_ms: float | None = None,
    model_used: str = "",
) -> Message:
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.BOT,
        text=text,
        reply_to=reply_to,
        sources=sources or [],
        entry_id=entry_id,
        confidence=confidence,
        latency_ms=latency_ms,
        model_used=model_used,
        decision=decision,
    )


def give_feedback(conversation: Conversation, message_id: int, helpful: bool) -> tuple[Message, Message | None]:
    """Record 👍/👎 on a bot answer; 👎 hands the conversation to a person."""
    message = conversation.messages.filter(pk=message_id, role=Message.Role.BOT).first()
    if message is None:
        raise NotFound("No such answer in this conversation.")
    Message.objects.filter(pk=message.pk).update(feedback=1 if helpful else -1)
    message.feedback = 1 if helpful else -1
    notice = None
    if not helpful and conversation.status == Conversation.Status.BOT:
        _, notice = escalate(
            conversation,
            Ticket.Reason.NEGATIVE_FEEDBACK,
            confidence=message.confidence,
            candidates=message.decision.get("candidates", []),
            trigger=message.reply_to,
            preface=say("sorry_not_helpful", language_of(conversation)),
        )
    return message, notice


# --- escalation and the queue --------------------------------------------------------------------
def queue_info(conversation: Conversation) -> dict[str, Any] | None:
    ticket = conversation.tickets.filter(status=Ticket.Status.OPEN).order_by("-created_at").first()
    if ticket is None:
        return None
    ahead = Ticket.objects.filter(status=Ticket.Status.OPEN, by_email=False, created_at__lt=ticket.created_at).count()
    return {
        "position": ahead + 1,
        "expected_wait_minutes": settings.SUPPORT_EXPECTED_WAIT_MINUTES * (ahead + 1),
        "by_email": ticket.by_email,
    }


def summarise(
    conversation: Conversation,
    reason: str,
    trigger: Message | None,
    candidates: list[dict],
    offered: list[str] | None = None,
) -> str:
    customer_lines = list(
        conversation.messages.filter(role=Message.Role.CUSTOMER).order_by("-id").values_list("text", flat=True)[:3]
    )
    parts = [f"Reason: {Ticket.Reason(reason).label}. Language: {language_of(conversation)}."]
    if trigger is not None:
        parts.append(f"Last message: “{trigger.text[:300]}”.")
    if len(customer_lines) > 1:
        parts.append("Earlier: " + " | ".join(f"“{t[:120]}”" for t in reversed(customer_lines[1:])) + ".")
    if offered:
        parts.append("Offered as choices: " + "; ".join(f"“{title[:80]}”" for title in offered) + ".")
    elif candidates:
        parts.append(
            "Closest entries: "
            + "; ".join(f"{c.get('question', '')[:80]} ({c.get('score', 0):.2f})" for c in candidates[:3])
            + "."
        )
    return " ".join(parts)


def escalate(
    conversation: Conversation,
    reason: str,
    *,
    confidence: float | None = None,
    candidates: list[dict[str, Any]] | None = None,
    trigger: Message | None = None,
    preface: str = "",
    offered: list[str] | None = None,
) -> tuple[Ticket, Message]:
    """Hand the conversation to the queue with what the bot knew; tell the customer what happens next.

    ``offered``: the titles of the choices the customer was offered (and turned down), for the summary.
    Idempotent: a conversation already waiting or with an agent keeps its open ticket.
    """
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        open_ticket = locked.tickets.filter(status__in=[Ticket.Status.OPEN, Ticket.Status.CLAIMED]).first()
        language = language_of(locked)
        if open_ticket is not None and locked.status != Conversation.Status.BOT:
            notice = Message.objects.create(
                conversation=locked, role=Message.Role.SYSTEM, text=say("waiting", language)
            )
            return open_ticket, notice
        by_email = not hours.is_open()
        ticket = Ticket.objects.create(
            conversation=locked,
            reason=reason,
            confidence=confidence,
            candidates=candidates or [],
            trigger_message=trigger,
            by_email=by_email,
            summary=summarise(locked, reason, trigger, candidates or [], offered),
        )
        Conversation.objects.filter(pk=locked.pk).update(
            status=Conversation.Status.WAITING, assignee=None, updated_at=timezone.now()
        )
        conversation.status = Conversation.Status.WAITING
        if by_email:
            email = f" ({locked.customer_email})" if locked.customer_email else ""
            notice_text = say("queued_by_email", language, hours=settings.BUSINESS_HOURS, email=email)
        else:
            info = queue_info(locked) or {
                "position": 1,
                "expected_wait_minutes": settings.SUPPORT_EXPECTED_WAIT_MINUTES,
            }
            notice_text = say("queued", language, position=info["position"], wait=info["expected_wait_minutes"])
        notice = Message.objects.create(
            conversation=locked,
            role=Message.Role.SYSTEM,
            text=f"{preface} {notice_text}".strip(),
            reply_to=trigger,
            decision={"reason": reason, "confidence": confidence, "candidates": candidates or []},
        )
    logger.info("conversation escalated", extra={"conversation": str(conversation.pk), "reason": reason})
    return ticket, notice


# --- choices: offered by the bot, picked by the customer -------------------------------------------
def offer_choices(conversation: Conversation, question: Message, decision: Decision) -> Message:
    """Store the bot's "did you mean one of these?" with the offered entries (id and title in the customer's
    language) in ``decision["offered"]``; ``decision["picked"]`` stays None until the customer picks."""
    language = language_of(conversation)
    ids = [choice.entry_id for choice in decision.choices]
    entries = Entry.objects.answerable().filter(knowledge_base_id=conversation.knowledge_base_id).in_bulk(ids)
    offered = [{"entry_id": pk, "title": entries[pk].answer_in(language)[0]} for pk in ids if pk in entries]
    return record_bot_message(
        conversation,
        question,
        say("choices", language),
        decision={**decision.as_dict(), "offered": offered, "picked": None},
        confidence=decision.confidence,
        latency_ms=decision.latency_ms,
        model_used="policy",
    )


class NoChoices(ChatError):
    code, status = "no_choices", 422


class UnknownChoice(ChatError):
    code, status = "unknown_choice", 422


class AlreadyChosen(ChatError):
    code, status = "already_chosen", 409


class ChoicesExpired(ChatError):
    code, status = "choices_expired", 409


@dataclass(frozen=True)
class Pick:
    """A customer's pick among the choices ``offer`` made: an entry id, ``"none"`` or ``"person"``."""

    offer: Message
    choice: str
    entry: Entry | None = None  # the picked entry, to answer from
    reply: Message | None = None  # what was already said about this pick (the hand-over notice, or a retry's reply)
    repeated: bool = False  # the same pick again (a retry): nothing new is done

    @property
    def question(self) -> Message:
        assert self.offer.reply_to is not None  # choices always answer a customer message
        return self.offer.reply_to

    def decision(self) -> Decision:
        """The answer decision for the picked entry, keeping what routing saw when it offered the choices."""
        from knowledge.routing import Candidate, Decision

        assert self.entry is not None
        seen = self.offer.decision
        candidates = [Candidate(int(c["entry_id"]), str(c["question"]), float(c["score"])) for c in seen["candidates"]]
        return Decision(
            Outcome.ANSWER,
            float(seen.get("confidence") or 0.0),
            self.entry,
            candidates=candidates,
            version=seen.get("routing_version"),
        )

    def note(self) -> dict[str, Any]:
        """What the answer's stored decision says about where it came from."""
        return {"picked": self.choice, "picked_from": self.offer.pk}


def _offered(message: Message) -> list[dict[str, Any]]:
    offered = message.decision.get("offered") if message.decision.get("outcome") == Outcome.CHOICES else None
    return offered if isinstance(offered, list) else []


def reply_to_pick(offer: Message) -> Message | None:
    """What followed a pick: the first bot or system reply to the same customer message after the choices."""
    return (
        Message.objects.filter(
            conversation_id=offer.conversation_id,
            reply_to_id=offer.reply_to_id,
            id__gt=offer.pk,
            role__in=[Message.Role.BOT, Message.Role.SYSTEM],
        )
        .order_by("id")
        .first()
    )


def choose(conversation: Conversation, message_id: int, choice: str) -> Pick:
    """Record the customer's pick among the choices of bot message ``message_id``, once.

    ``choice`` is an offered entry's id, ``"none"`` (hand over: none of these fits) or ``"person"``. Picking
    an entry returns it for the turn layer to answer from; the other two hand over here. The same pick again
    (a retry) changes nothing and says what followed the first; a different one is refused.
    """
    offer = (
        conversation.messages.select_related("reply_to")
        .filter(pk=message_id, role=Message.Role.BOT, reply_to__isnull=False)
        .first()
    )
    if offer is None:
        raise NotFound("No such message in this conversation.")
    offered = _offered(offer)
    if not offered:
        raise NoChoices("This message offered no choices.")
    titles = {str(o["entry_id"]): str(o["title"]) for o in offered}
    if choice not in titles and choice not in tuple(OtherChoice):
        raise UnknownChoice(f"{choice!r} is not one of the offered choices ({', '.join(titles)}, none, person).")
    picked = offer.decision.get("picked")
    if picked is not None:
        if picked != choice:
            raise AlreadyChosen(f"A choice was already made for this message ({picked!r}).")
        return Pick(offer, choice, _entry(conversation, choice), reply_to_pick(offer), repeated=True)
    later = conversation.messages.filter(role=Message.Role.CUSTOMER, id__gt=offer.reply_to_id).exists()
    if later:
        raise ChoicesExpired("These choices were for an earlier message; the conversation has moved on.")
    entry = _entry(conversation, choice)
    if choice in titles and entry is None:
        raise UnknownChoice("That answer is no longer available; pick another one or ask for a person.")
    if entry is not None and conversation.status != Conversation.Status.BOT:
        raise Conflict("A person is taking care of this conversation now.")
    with transaction.atomic():
        # One pick per message, whoever races: a conditional UPDATE on the stored "picked": null.
        won = Message.objects.filter(pk=offer.pk, decision__picked=None).update(
            decision={**offer.decision, "picked": choice}
        )
        if not won:
            offer.refresh_from_db(fields=["decision"])
            return choose(conversation, message_id, choice)  # the other request won: same pick, or refused
        offer.decision = {**offer.decision, "picked": choice}
        if entry is not None:
            return Pick(offer, choice, entry)
        reason = HandoverReason.NO_CHOICE_FITS if choice == OtherChoice.NONE else HandoverReason.HUMAN_REQUEST
        _, notice = escalate(
            conversation,
            reason,
            confidence=offer.confidence if reason == HandoverReason.NO_CHOICE_FITS else None,
            candidates=offer.decision.get("candidates") or [],
            trigger=offer.reply_to,
            offered=list(titles.values()),
        )
    return Pick(offer, choice, reply=notice)


def _entry(conversation: Conversation, choice: str) -> Entry | None:
    if not choice.isdigit():
        return None
    return Entry.objects.answerable().filter(knowledge_base_id=conversation.knowledge_base_id, pk=int(choice)).first()


def request_handoff(conversation: Conversation) -> tuple[Ticket, Message]:
    last = conversation.messages.filter(role=Message.Role.CUSTOMER).order_by("-id").first()
    return escalate(conversation, Ticket.Reason.HUMAN_REQUEST, trigger=last)


# --- agents --------------------------------------------------------------------------------------
def claim(ticket: Ticket, agent: User) -> Ticket:
    """Take a waiting conversation. Exactly one of two agents clicking at once wins; the other gets Conflict."""
    now = timezone.now()
    with transaction.atomic():
        won = Ticket.objects.filter(pk=ticket.pk, status=Ticket.Status.OPEN).update(
            status=Ticket.Status.CLAIMED, claimed_by=agent, claimed_at=now
        )
        if not won:
            ticket.refresh_from_db()
            who = ticket.claimed_by.get_username() if ticket.claimed_by else "someone"
            raise Conflict(f"Ticket #{ticket.pk} is already {ticket.get_status_display().lower()} ({who}).")
        Conversation.objects.filter(pk=ticket.conversation_id).update(
            status=Conversation.Status.WITH_AGENT, assignee=agent, updated_at=now
        )
        conversation = Conversation.objects.select_related("knowledge_base").get(pk=ticket.conversation_id)
        name = getattr(agent, "first_name", "") or agent.get_username()
        Message.objects.create(
            conversation=conversation,
            role=Message.Role.SYSTEM,
            text=say("agent_joined", language_of(conversation), name=name),
        )
    ticket.refresh_from_db()
    return ticket


def _require_owner(conversation: Conversation, agent: User) -> None:
    if conversation.status != Conversation.Status.WITH_AGENT or conversation.assignee_id != agent.pk:
        raise Conflict("Take over this conversation before replying to the customer.")


def agent_reply(conversation: Conversation, agent: User, text: str) -> Message:
    text = text.strip()
    if not text:
        raise InvalidRequest("The reply is empty.")
    conversation.refresh_from_db()
    _require_owner(conversation, agent)
    return Message.objects.create(conversation=conversation, role=Message.Role.AGENT, text=text, author=agent)


def add_note(conversation: Conversation, agent: User, text: str) -> Message:
    """An internal note: agents see it, the customer never does."""
    if not text.strip():
        raise InvalidRequest("The note is empty.")
    return Message.objects.create(conversation=conversation, role=Message.Role.NOTE, text=text.strip(), author=agent)


def _close_ticket(conversation: Conversation, status: str) -> None:
    Ticket.objects.filter(conversation=conversation, status__in=[Ticket.Status.OPEN, Ticket.Status.CLAIMED]).update(
        status=status, resolved_at=timezone.now()
    )


def hand_back(conversation: Conversation, agent: User) -> None:
    """The bot answers again from the next message on."""
    with transaction.atomic():
        conversation.refresh_from_db()
        if conversation.status not in (Conversation.Status.WITH_AGENT, Conversation.Status.WAITING):
            raise Conflict("This conversation is not with a person.")
        _close_ticket(conversation, Ticket.Status.RELEASED)
        Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.BOT, assignee=None)
        conversation.status = Conversation.Status.BOT
        Message.objects.create(
            conversation=conversation, role=Message.Role.SYSTEM, text=say("handed_back", language_of(conversation))
        )


def release(conversation: Conversation, agent: User) -> None:
    """Put a claimed conversation back in the queue for another agent."""
    with transaction.atomic():
        updated = Ticket.objects.filter(conversation=conversation, status=Ticket.Status.CLAIMED).update(
            status=Ticket.Status.OPEN, claimed_by=None, claimed_at=None
        )
        if not updated:
            raise Conflict("This conversation is not claimed.")
        Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.WAITING, assignee=None)


def resolve(conversation: Conversation, agent: User) -> None:
    with transaction.atomic():
        _close_ticket(conversation, Ticket.Status.RESOLVED)
        Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.RESOLVED)
        conversation.status = Conversation.Status.RESOLVED
        Message.objects.create(
            conversation=conversation, role=Message.Role.SYSTEM, text=say("resolved", language_of(conversation))
        )


def open_tickets() -> Any:
    return Ticket.objects.filter(Q(status=Ticket.Status.OPEN) | Q(status=Ticket.Status.CLAIMED))


def draft_entry_from_reply(conversation: Conversation, message_id: int) -> Any:
    """Turn an agent's answer into a draft FAQ entry: the customer's question, the agent's reply."""
    from knowledge.actions import draft_entry

    reply = conversation.messages.filter(pk=message_id, role=Message.Role.AGENT).first()
    if reply is None:
        raise NotFound("Pick one of the agent's replies in this conversation.")
    question = conversation.messages.filter(role=Message.Role.CUSTOMER, id__lt=reply.pk).order_by("-id").first()
    if question is None:
        raise InvalidRequest("There is no customer question before this reply.")
    return draft_entry(conversation.knowledge_base, question.text, reply.text, language_of(conversation))
