"""Agents work tickets in the admin; ops see metrics and publish drafts; a staff user without a role sees nothing."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.urls import reverse

from chat import actions
from chat.models import CannedReply, Conversation, Message, Ticket
from knowledge.actions import publish_entry
from knowledge.models import Entry
from knowledge.routing import activate_version, route, save_version, train_model

from .conftest import staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(db) -> User:
    return staff_user("ana", "agents")  # without the shared fixture's transactional database


@pytest.fixture
def waiting(kb) -> Conversation:
    conversation = Conversation.objects.create(knowledge_base=kb, language="en")
    conversation.issue_token()
    conversation.save()
    message, _ = actions.add_customer_message(conversation, "Do you ship to Mars?")
    actions.escalate(conversation, Ticket.Reason.OUT_OF_SCOPE, confidence=0.2, trigger=message)
    conversation.refresh_from_db()
    return conversation


def _work(client, conversation, **data):
    return client.post(reverse("admin:chat_conversation_work", args=[conversation.pk]), data, follow=True)


def test_an_agent_finds_the_waiting_customer_in_the_queue(client, agent, waiting):
    client.force_login(agent)
    page = client.get(reverse("admin:chat_ticket_changelist"))
    assert page.status_code == 200
    assert "Do you ship to Mars?" in page.content.decode()
    index = client.get(reverse("admin:index")).content.decode()
    assert 'data-count="waiting">1<' in index


def test_take_over_reply_note_and_hand_back(client, agent, waiting):
    client.force_login(agent)
    ticket = waiting.tickets.get()
    assert _work(client, waiting, op="claim", ticket=ticket.pk).status_code == 200
    waiting.refresh_from_db()
    assert (waiting.status, waiting.assignee) == (Conversation.Status.WITH_AGENT, agent)
    _work(client, waiting, op="reply", text="Sadly not yet!")
    _work(client, waiting, op="note", text="Customer is joking, probably.")
    roles = list(waiting.messages.values_list("role", flat=True))
    assert roles.count(Message.Role.AGENT) == 1
    assert roles.count(Message.Role.NOTE) == 1
    # The customer's API never shows the note.
    from chat.serializers import conversation_dict

    public = conversation_dict(waiting, None)
    assert all(m["role"] != "note" for m in public["messages"])
    assert any(m["role"] == "agent" and m["author_name"] == "Ana" for m in public["messages"])
    _work(client, waiting, op="handback")
    waiting.refresh_from_db()
    assert waiting.status == Conversation.Status.BOT
    assert waiting.tickets.get().status == Ticket.Status.RELEASED
    logged = set(LogEntry.objects.filter(user=agent).values_list("change_message", flat=True))
    assert {"Replied to the customer", "Added an internal note", "Handed back to the bot"} <= logged


def test_the_second_agent_is_told_someone_else_took_it(client, agent, other_agent, waiting):
    ticket = waiting.tickets.get()
    actions.claim(ticket, agent)
    client.force_login(other_agent)
    page = _work(client, waiting, op="claim", ticket=ticket.pk).content.decode()
    assert "already" in page
    waiting.refresh_from_db()
    assert waiting.assignee == agent


def test_only_the_owner_can_reply(client, agent, other_agent, waiting):
    actions.claim(waiting.tickets.get(), agent)
    client.force_login(other_agent)
    page = _work(client, waiting, op="reply", text="Hi!").content.decode()
    assert "Take over this conversation" in page
    assert not waiting.messages.filter(role=Message.Role.AGENT).exists()


@pytest.mark.parametrize(
    ("url_name", "args"),
    [("admin:chat_ticket_changelist", None), ("admin:chat_metrics", None), ("admin:chat_conversation_work", "conv")],
)
def test_a_staff_user_without_a_role_sees_nothing(client, no_rights, waiting, url_name, args):
    client.force_login(no_rights)
    response = client.get(reverse(url_name, args=[waiting.pk] if args else None))
    assert response.status_code == 403
    assert client.post(reverse("admin:chat_conversation_work", args=[waiting.pk]), {"op": "claim"}).status_code == 403


def test_ops_see_metrics_but_cannot_work_tickets(client, ops, waiting):
    client.force_login(ops)
    assert client.get(reverse("admin:chat_metrics")).status_code == 200
    response = client.post(
        reverse("admin:chat_conversation_work", args=[waiting.pk]), {"op": "claim", "ticket": waiting.tickets.get().pk}
    )
    assert response.status_code == 403


def test_agents_cannot_see_metrics_or_edit_knowledge(client, agent):
    client.force_login(agent)
    assert client.get(reverse("admin:chat_metrics")).status_code == 403
    assert client.get(reverse("admin:knowledge_source_add")).status_code == 403


def test_metrics_count_conversations_escalations_and_feedback(client, ops, waiting, kb):
    answered = Conversation.objects.create(knowledge_base=kb, language="en")
    question, _ = actions.add_customer_message(answered, "How much does shipping cost?")
    entry = Entry.objects.get(key="ship")
    reply = actions.record_bot_message(answered, question, entry.answer, decision={}, entry_id=entry.pk)
    actions.give_feedback(answered, reply.pk, helpful=True)
    client.force_login(ops)
    page = client.get(reverse("admin:chat_metrics")).content.decode()
    assert 'data-metric="conversations">2<' in page
    assert 'data-metric="auto_resolution_rate">50%<' in page
    assert "Do you ship to Mars?" in page  # top unanswered questions


def test_canned_replies_are_offered_in_the_workspace(client, agent, waiting):
    CannedReply.objects.create(title="Greeting", text="Hello! How can I help?", language="en")
    actions.claim(waiting.tickets.get(), agent)
    client.force_login(agent)
    page = client.get(reverse("admin:chat_conversation_work", args=[waiting.pk])).content.decode()
    assert "Hello! How can I help?" in page


def test_an_agent_reply_becomes_a_draft_that_ops_publish_and_the_bot_then_answers(agent, waiting, kb):
    version = save_version(kb, train_model(kb), {})
    activate_version(version)  # a trained version is live: new entries must still be answerable at once
    actions.claim(waiting.tickets.get(), agent)
    reply = actions.agent_reply(waiting, agent, "We deliver to Mars every second Tuesday; it costs 1,000,000 euros.")
    draft = actions.draft_entry_from_reply(waiting, reply.pk)
    assert draft.status == Entry.Status.DRAFT
    assert draft.question == "Do you ship to Mars?"
    assert route(kb, "Do you ship to Mars?").entry != draft  # drafts are never answered
    publish_entry(draft)
    decision = route(kb, "Do you ship to Mars?")
    assert decision.entry == draft


def test_a_draft_keeps_nothing_personal_from_the_conversation(agent, waiting, kb):
    actions.claim(waiting.tickets.get(), agent)
    waiting.customer_name = "Ana Pérez"
    waiting.save(update_fields=["customer_name"])
    actions.add_customer_message(waiting, "Soy Ana Pérez y mi PIN es 4821, escribidme a ana@example.com: ¿no entra?")
    reply = actions.agent_reply(waiting, agent, "Ana Pérez, 4821 es correcto; cámbialo en Ajustes > Seguridad.")
    draft = actions.draft_entry_from_reply(waiting, reply.pk)
    for private in ("Ana", "Pérez", "4821", "ana@example.com"):
        assert private not in draft.question
        assert private not in draft.answer
    assert "Ajustes > Seguridad" in draft.answer  # the agent's help itself survives


def test_a_draft_that_repeats_an_existing_entry_is_flagged(agent, waiting, kb):
    actions.claim(waiting.tickets.get(), agent)
    actions.add_customer_message(waiting, "How much does shipping cost?")
    reply = actions.agent_reply(waiting, agent, "It's 4.95 euros.")
    draft = actions.draft_entry_from_reply(waiting, reply.pk)
    assert draft.duplicate_of == Entry.objects.get(key="ship")


def _offered_choices(kb, language: str = "en") -> tuple[Conversation, Message, list[Entry]]:
    """A customer whose unclear question got choices: the entries "ship" and "return"."""
    from knowledge.routing import Candidate, Decision
    from knowledge.vocabulary import Outcome

    conversation = Conversation(knowledge_base=kb, language=language)
    conversation.issue_token()
    conversation.save()
    question, _ = actions.add_customer_message(conversation, "the parcel thing")
    offered = [Entry.objects.get(knowledge_base=kb, key=key) for key in ("ship", "return")]
    candidates = [Candidate(e.pk, e.question, 0.6) for e in offered]
    offer = actions.offer_choices(conversation, question, Decision(Outcome.CHOICES, 0.5, choices=candidates))
    return conversation, offer, offered


def test_the_workspace_shows_what_was_offered_and_what_the_customer_picked(client, agent, kb):
    conversation, offer, (ship, returns) = _offered_choices(kb)
    client.force_login(agent)
    url = reverse("admin:chat_conversation_work", args=[conversation.pk])
    page = client.get(url).content.decode()
    assert "Offered as choices" in page
    assert ship.question in page
    assert returns.question in page
    assert "Not picked yet" in page

    actions.choose(conversation, offer.pk, str(returns.pk))
    page = client.get(url).content.decode()
    assert f"Picked “{returns.question}”" in page
    assert page.count("— picked") == 1


def test_the_workspace_shows_none_of_these_and_the_ticket_names_the_offered_entries(client, agent, kb):
    conversation, offer, (ship, returns) = _offered_choices(kb)
    actions.choose(conversation, offer.pk, "none")
    client.force_login(agent)
    page = client.get(reverse("admin:chat_conversation_work", args=[conversation.pk])).content.decode()
    assert "None of these (handed over)" in page
    assert "None of the offered answers fitted" in page  # the ticket's reason
    ticket = conversation.tickets.get()
    assert ship.question in ticket.summary
    assert returns.question in ticket.summary
