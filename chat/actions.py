"""Everything that changes a conversation. Views, the admin, commands and tasks call these.

A conversation has one owner at a time, changed only here: the bot (status ``bot``), the queue
(``waiting_for_agent``), one agent (``with_agent``), or nobody (``resolved``). The bot only
answers in ``bot``; claims use a conditional UPDATE so two agents can never both win.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chat import hours, push
from chat.errors import (
    AlreadyChosen,
    ChoicesExpired,
    Conflict,
    InvalidRequest,
    NoChoices,
    NotFound,
    TooLarge,
    Unauthorized,
    UnknownChoice,
)
from chat.models import Conversation, Message, Ticket
from chat.schemas import Contact, OtherChoice, StartConversation
from chat.texts import text as say
from knowledge.language import detect_language
from knowledge.models import Entry, KnowledgeBase
from knowledge.vocabulary import HandoverReason, Outcome

if TYPE_CHECKING:
    from knowledge.routing import Decision

logger = logging.getLogger(__name__)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


# --- customers -----------------------------------------------------------------------------------
class Identity(StrEnum):
    """What became of the identity the host page passed when the conversation started."""

    NONE = "none"  # the page passed none
    VERIFIED = "verified"  # signed with CHAT_IDENTITY_SECRET: stored as the customer's id and e-mail
    IGNORED = "ignored"  # unsigned, badly signed, or no secret configured: not stored, the chat goes on


def identity_signature(user_id: str, email: str, secret: str) -> str:
    """HMAC-SHA256 (hex) of the canonical identity string ``"<user id>\n<e-mail, lower case>"``."""
    canonical = f"{user_id}\n{email.strip().lower()}"
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def verify_identity(user_id: str, email: str, signature: str) -> bool:
    secret = settings.CHAT_IDENTITY_SECRET
    if not (secret and signature and (user_id or email)):
        return False
    return hmac.compare_digest(identity_signature(user_id, email, secret), signature.lower())


def start_conversation(data: StartConversation) -> tuple[Conversation, str, Identity]:
    """A new conversation and its secret. The host's identity is stored only when its signature verifies: a
    customer must never be able to claim to be someone else, but a misconfigured site must not lose the chat."""
    kb = KnowledgeBase.objects.filter(slug=data.kb).first()
    if kb is None:
        raise NotFound(f"There is no knowledge base called {data.kb!r}.")
    conversation = Conversation(
        knowledge_base=kb,
        language=data.language or "",
        page_url=data.page_url,
        customer_name=data.customer_name,
        customer_email=data.customer_email,
    )
    identity = Identity.NONE
    if data.user_id or data.user_email or data.user_hmac:
        identity = Identity.IGNORED
        if verify_identity(data.user_id, data.user_email, data.user_hmac):
            identity = Identity.VERIFIED
            conversation.customer_ref = data.user_id
            conversation.customer_email = data.user_email or data.customer_email
            conversation.identity_verified = True
        else:
            logger.warning("host identity not verified: ignored", extra={"kb": kb.slug})
    token = conversation.issue_token()
    conversation.save()
    return conversation, token, identity


def set_contact(conversation: Conversation, data: Contact) -> Conversation:
    """The name and e-mail the customer typed (pre-chat or while away). A host-verified e-mail is kept."""
    updates: dict[str, Any] = {"updated_at": timezone.now()}
    if data.name:
        updates["customer_name"] = data.name
    if data.email and not conversation.identity_verified:
        updates["customer_email"] = data.email
    Conversation.objects.filter(pk=conversation.pk).update(**updates)
    for field, value in updates.items():
        setattr(conversation, field, value)
    return conversation


def close_by_customer(conversation: Conversation) -> None:
    """The customer starts over: the conversation ends and its open ticket is closed (withdrawn), so nobody is
    left waiting on a customer who has gone. The agent who held it sees why."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().select_related("knowledge_base").get(pk=conversation.pk)
        closed = Ticket.objects.filter(
            conversation=locked, status__in=[Ticket.Status.OPEN, Ticket.Status.CLAIMED]
        ).update(status=Ticket.Status.WITHDRAWN, resolved_at=timezone.now())
        push.tickets_changed(locked.pk)
        if locked.status == Conversation.Status.RESOLVED and not closed:
            return
        Conversation.objects.filter(pk=locked.pk).update(
            status=Conversation.Status.RESOLVED, assignee=None, updated_at=timezone.now()
        )
        conversation.status = Conversation.Status.RESOLVED
        if closed:
            Message.objects.create(
                conversation=locked, role=Message.Role.SYSTEM, text=say("customer_left", language_of(locked))
            )


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
WAIT_HISTORY = timedelta(days=7)  # claims this recent say how long a wait is now
WAIT_SAMPLES = 50
WAIT_MIN_SAMPLES = 3  # fewer measured claims than this: SUPPORT_EXPECTED_WAIT_MINUTES
THROUGHPUT_WINDOW = timedelta(hours=2)  # claims this recent say how fast the queue moves now
MAX_WAIT_MINUTES = 120  # beyond this the customer is told "more than 2 hours", never a made-up figure


def queue_info(conversation: Conversation) -> dict[str, Any] | None:
    """Where the conversation's open ticket stands: its place among the waiting tickets (oldest first; ties by
    id, so two customers never share a place) and a wait estimate from measured claim times."""
    ticket = conversation.tickets.filter(status=Ticket.Status.OPEN).order_by("-created_at").first()
    if ticket is None:
        return None
    if ticket.by_email:
        return {"position": None, "expected_wait_minutes": None, "wait_over": False, "by_email": True}
    ahead = (
        Ticket.objects.filter(status=Ticket.Status.OPEN, by_email=False)
        .filter(Q(created_at__lt=ticket.created_at) | Q(created_at=ticket.created_at, pk__lt=ticket.pk))
        .count()
    )
    minutes, over = expected_wait(ahead + 1)
    return {"position": ahead + 1, "expected_wait_minutes": minutes, "wait_over": over, "by_email": False}


def expected_wait(position: int) -> tuple[int, bool]:
    """Minutes until an agent claims the ticket at ``position``, and whether it is over MAX_WAIT_MINUTES.

    The first in line waits what tickets waited lately (the median wait to claim); each one ahead adds the
    time between recent claims. No history yet: SUPPORT_EXPECTED_WAIT_MINUTES for both.
    """
    now = timezone.now()
    claims: list[tuple[datetime, datetime]] = list(
        Ticket.objects.filter(claimed_at__gte=now - WAIT_HISTORY)
        .order_by("-claimed_at")
        .values_list("created_at", "claimed_at")[:WAIT_SAMPLES]  # type: ignore[arg-type] # claimed_at is set here
    )
    waits = [(claimed - created).total_seconds() / 60 for created, claimed in claims if claimed >= created]
    first = float(settings.SUPPORT_EXPECTED_WAIT_MINUTES)
    if len(waits) >= WAIT_MIN_SAMPLES:
        first = statistics.median(waits)
    recent = sorted(claimed for _, claimed in claims if claimed >= now - THROUGHPUT_WINDOW)
    if len(recent) >= WAIT_MIN_SAMPLES:
        between = (recent[-1] - recent[0]).total_seconds() / 60 / (len(recent) - 1)
    else:
        between = first
    between = min(max(between, 0.5), 60.0)
    return round_wait(first + (position - 1) * between)


def round_wait(minutes: float) -> tuple[int, bool]:
    """A figure a person would say: whole minutes up to 10, then fives, then quarter hours; capped."""
    if minutes > MAX_WAIT_MINUTES:
        return MAX_WAIT_MINUTES, True
    if minutes <= 10:
        return max(1, math.ceil(minutes)), False
    if minutes <= 60:
        return int(5 * math.ceil(minutes / 5)), False
    return min(MAX_WAIT_MINUTES, int(15 * math.ceil(minutes / 15))), False


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
            notice_text = say("queued_by_email", language, hours=hours.describe(language), email=email)
        else:
            # No place or estimate in the text: both change while the customer waits (the widget's banner
            # shows them live from queue_info); a number frozen in a message would soon be wrong.
            notice_text = say("queued", language)
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
        push.tickets_changed(ticket.conversation_id)
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
    push.tickets_changed(conversation.pk)


def _lock_held(conversation: Conversation, agent: User, doing: str) -> Conversation:
    """The conversation, locked, if ``agent`` may ``doing`` it: one an agent holds only that agent may release,
    resolve or hand back; one waiting in the queue (nobody holds it) any agent may resolve or hand back."""
    locked = Conversation.objects.select_for_update().select_related("knowledge_base").get(pk=conversation.pk)
    if locked.status == Conversation.Status.WITH_AGENT and locked.assignee_id != agent.pk:
        holder = User.objects.filter(pk=locked.assignee_id or 0).values_list("username", flat=True).first()
        raise Conflict(f"{holder or 'Another agent'} has this conversation: only they can {doing} it.")
    return locked


def hand_back(conversation: Conversation, agent: User) -> Message | None:
    """The bot answers again, starting with the customer's last unanswered message (returned), if any."""
    with transaction.atomic():
        locked = _lock_held(conversation, agent, "hand back")
        if locked.status not in (Conversation.Status.WITH_AGENT, Conversation.Status.WAITING):
            raise Conflict("This conversation is not with a person.")
        _close_ticket(locked, Ticket.Status.RELEASED)
        Conversation.objects.filter(pk=locked.pk).update(status=Conversation.Status.BOT, assignee=None)
        conversation.status = locked.status = Conversation.Status.BOT
        Message.objects.create(
            conversation=locked, role=Message.Role.SYSTEM, text=say("handed_back", language_of(locked))
        )
    return answer_unanswered(locked)


def unanswered_message(conversation: Conversation) -> Message | None:
    """The customer's latest message that nobody answered: written after the last bot or agent message, and
    without a reply of its own (a message that was handed over has the hand-over notice as its reply)."""
    last_reply = (
        conversation.messages.filter(role__in=[Message.Role.BOT, Message.Role.AGENT])
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return (
        conversation.messages.filter(role=Message.Role.CUSTOMER, id__gt=last_reply or 0, replies__isnull=True)
        .order_by("-id")
        .first()
    )


def answer_unanswered(conversation: Conversation) -> Message | None:
    """Run the bot's normal turn for the customer's unanswered message (see unanswered_message), if any: the
    answer, choices or hand-over are stored and reach the widget like any reply. Returns that message."""
    from chat.turns import respond

    message = unanswered_message(conversation)
    if message is None or conversation.status != Conversation.Status.BOT:
        return None
    fresh = Conversation.objects.select_related("knowledge_base").get(pk=conversation.pk)

    async def turn() -> None:
        async for _ in respond(fresh, message):
            pass

    try:
        async_to_sync(turn)()
    except Exception:  # the turn escalates its own failures; this keeps the agent's click from failing
        logger.exception("answering the pending message failed", extra={"conversation": str(conversation.pk)})
    return message


def release(conversation: Conversation, agent: User) -> None:
    """Put a claimed conversation back in the queue for another agent."""
    with transaction.atomic():
        locked = _lock_held(conversation, agent, "release")
        if locked.status != Conversation.Status.WITH_AGENT:
            raise Conflict("This conversation is not claimed.")
        updated = Ticket.objects.filter(conversation=locked, status=Ticket.Status.CLAIMED).update(
            status=Ticket.Status.OPEN, claimed_by=None, claimed_at=None
        )
        if not updated:
            raise Conflict("This conversation is not claimed.")
        push.tickets_changed(conversation.pk)
        Conversation.objects.filter(pk=locked.pk).update(status=Conversation.Status.WAITING, assignee=None)
        conversation.status = Conversation.Status.WAITING


def resolve(conversation: Conversation, agent: User) -> None:
    """Close the conversation with one closing message; when a ticket was open, that message asks the customer
    for a 1-5 satisfaction rating (answered through rate_resolution)."""
    with transaction.atomic():
        locked = _lock_held(conversation, agent, "resolve")
        if locked.status == Conversation.Status.RESOLVED:
            raise Conflict("This conversation is already resolved.")
        ticket = locked.tickets.filter(status__in=[Ticket.Status.OPEN, Ticket.Status.CLAIMED]).order_by("-pk").first()
        _close_ticket(locked, Ticket.Status.RESOLVED)
        Conversation.objects.filter(pk=locked.pk).update(status=Conversation.Status.RESOLVED)
        conversation.status = Conversation.Status.RESOLVED
        language = language_of(locked)
        Message.objects.create(
            conversation=locked,
            role=Message.Role.SYSTEM,
            text=say("resolved_csat" if ticket else "resolved", language),
            decision={"csat_ticket": ticket.pk, "csat_rating": None} if ticket else {},
        )


def rate_resolution(conversation: Conversation, message_id: int, rating: int) -> Message:
    """The customer's 1-5 answer to the satisfaction question of closing message ``message_id``; a second
    answer replaces the first (a slip of the finger), on the message and on its ticket."""
    message = conversation.messages.filter(pk=message_id, role=Message.Role.SYSTEM).first()
    ticket_id = message.decision.get("csat_ticket") if message is not None else None
    if message is None or not ticket_id:
        raise NotFound("No satisfaction question with that id in this conversation.")
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket_id, conversation=conversation).update(csat=rating, csat_at=timezone.now())
        message.decision = {**message.decision, "csat_rating": rating}
        message.save(update_fields=["decision"])
    return message


def open_tickets() -> Any:
    return Ticket.objects.filter(Q(status=Ticket.Status.OPEN) | Q(status=Ticket.Status.CLAIMED))


def draft_entry_from_reply(conversation: Conversation, message_id: int) -> Any:
    """Turn an agent's answer into a draft FAQ entry: the customer's question, the agent's reply."""
    from knowledge.actions import draft_entry
    from knowledge.redaction import conversation_redactor

    reply = conversation.messages.filter(pk=message_id, role=Message.Role.AGENT).first()
    if reply is None:
        raise NotFound("Pick one of the agent's replies in this conversation.")
    question = conversation.messages.filter(role=Message.Role.CUSTOMER, id__lt=reply.pk).order_by("-id").first()
    if question is None:
        raise InvalidRequest("There is no customer question before this reply.")
    # an entry is shown to every customer: nothing personal from this one goes in (a PIN echoed by the agent neither)
    typed = conversation.messages.filter(role=Message.Role.CUSTOMER).values_list("text", flat=True)
    private = conversation_redactor(conversation.customer_name, typed)
    kb, language = conversation.knowledge_base, language_of(conversation)
    return draft_entry(kb, private(question.text), private(reply.text), language)
