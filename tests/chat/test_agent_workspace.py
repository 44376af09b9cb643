"""Issue 14, the agents' side: a scannable queue, a workspace worked in place, safe Markdown and readable
reasons, who the customer is, and text that cannot widen or reorder the page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from chat import actions
from chat.markdown import render_markdown
from chat.models import Conversation, Message, Ticket

from .conftest import staff_user

pytestmark = pytest.mark.django_db
RLO = "\u202e"


@pytest.fixture
def agent(db) -> User:
    # without the shared fixture's transactional database or first name: the pages show the user name
    return staff_user("ana", "agents", first_name="")


def _waiting(kb, text: str = "Do you ship to Mars?", **customer: Any) -> Conversation:
    conversation = Conversation.objects.create(knowledge_base=kb, language="en", **customer)
    message, _ = actions.add_customer_message(conversation, text)
    actions.escalate(conversation, Ticket.Reason.OUT_OF_SCOPE, confidence=0.2, trigger=message)
    conversation.refresh_from_db()
    return conversation


def _in_place(client, conversation, **data):
    return client.post(
        reverse("admin:chat_conversation_work", args=[conversation.pk]), data, HTTP_X_REQUESTED_WITH="fetch"
    )


# --- the queue ------------------------------------------------------------------------------------------
def test_the_queue_lists_waiting_tickets_first_with_status_and_owner(client, agent, kb):
    claimed = _waiting(kb, "first in, already taken")
    actions.claim(claimed.tickets.get(), agent)
    _waiting(kb, "second in, still waiting")
    client.force_login(agent)
    page = client.get(reverse("admin:chat_ticket_changelist")).content.decode()
    assert page.index("second in, still waiting") < page.index("first in, already taken")
    assert '<span class="q-status open">Waiting</span>' in page
    assert '<span class="q-status claimed">With an agent</span>' in page
    assert "<bdi>ana</bdi>" in page
    assert "By by email" not in page
    assert "reply channel" in page


def test_the_queue_shows_customer_text_without_bidi_controls(client, agent, kb):
    _waiting(kb, f"refund {RLO}gnp.exe")
    client.force_login(agent)
    page = client.get(reverse("admin:chat_ticket_changelist")).content.decode()
    assert RLO not in page
    assert "refund gnp.exe" in page


# --- the workspace, worked in place ---------------------------------------------------------------------
def test_taking_over_and_replying_in_place_answer_with_the_changed_parts(client, agent, kb):
    conversation = _waiting(kb)
    client.force_login(agent)
    last = conversation.messages.latest("id").pk
    claimed = _in_place(client, conversation, op="claim", ticket=conversation.tickets.get().pk, after=last)
    assert claimed.status_code == 200
    parts = claimed.json()
    assert parts["status"] == "with_agent"
    assert 'id="reply-text"' in parts["actions"]
    assert "Take over" not in parts["ticket"]
    assert "has joined" in parts["history"]

    replied = _in_place(client, conversation, op="reply", text="Sadly not yet!", after=parts["last_id"]).json()
    assert "Sadly not yet!" in replied["history"]
    assert "Do you ship to Mars?" not in replied["history"]  # only what is new
    assert replied["notices"] == []


def test_an_action_refused_in_place_says_why(client, agent, other_agent, kb):
    conversation = _waiting(kb)
    actions.claim(conversation.tickets.get(), agent)
    client.force_login(other_agent)
    for op in ("release", "resolve", "handback"):
        notices = _in_place(client, conversation, op=op).json()["notices"]
        assert notices == [{"level": "error", "text": f"ana has this conversation: only they can {_verb(op)} it."}]
    conversation.refresh_from_db()
    assert (conversation.status, conversation.assignee) == (Conversation.Status.WITH_AGENT, agent)


def _verb(op: str) -> str:
    return {"handback": "hand back"}.get(op, op)


def test_a_partial_refresh_brings_new_messages_and_counts_what_the_customer_wrote(client, agent, kb):
    conversation = _waiting(kb)
    last = conversation.messages.latest("id").pk
    actions.add_customer_message(conversation, "Hello? Anyone?")
    client.force_login(agent)
    response = client.get(
        reverse("admin:chat_conversation_work", args=[conversation.pk]),
        {"partial": "1", "after": last},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    parts = response.json()
    assert parts["customer_wrote"] == 1
    assert "Hello? Anyone?" in parts["history"]


def test_bot_turns_render_markdown_safely_and_reasons_read_as_words(client, agent, kb):
    conversation = _waiting(kb)
    question = conversation.messages.get(role=Message.Role.CUSTOMER)
    actions.record_bot_message(
        conversation, question, "**Free** shipping:\n- over 50 €\n- <script>alert(1)</script>", decision={}
    )
    client.force_login(agent)
    page = client.get(reverse("admin:chat_conversation_work", args=[conversation.pk])).content.decode()
    assert "<strong>Free</strong> shipping:" in page
    assert "<li>over 50 €</li>" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Not covered by the knowledge base" in page
    assert "· out_of_scope" not in page


def test_the_workspace_shows_who_the_customer_is_the_page_and_past_conversations(client, agent, kb):
    earlier = _waiting(kb, "Where is my order?", customer_email="lucia@example.es")
    now = _waiting(
        kb,
        "It still has not arrived",
        customer_email="Lucia@example.es",
        customer_name="Lucía",
        page_url="https://shop.example/orders/17",
    )
    client.force_login(agent)
    page = client.get(reverse("admin:chat_conversation_work", args=[now.pk])).content.decode()
    assert "Lucía" in page
    assert "lucia@example.es" in page.lower()
    assert "as typed" in page
    assert 'href="https://shop.example/orders/17"' in page
    assert reverse("admin:chat_conversation_work", args=[earlier.pk]) in page
    assert "Where is my order?" in page


def test_a_verified_customer_is_marked_and_matched_by_the_sites_id(client, agent, kb):
    _waiting(kb, "older chat, same site user", customer_ref="u-9", identity_verified=True)
    _waiting(kb, "someone typed this id", customer_ref="u-9")  # not verified: never matched
    now = _waiting(kb, "help", customer_ref="u-9", customer_email="v@example.com", identity_verified=True)
    client.force_login(agent)
    page = client.get(reverse("admin:chat_conversation_work", args=[now.pk])).content.decode()
    assert "verified by the site" in page
    assert "older chat, same site user" in page
    assert "someone typed this id" not in page


def test_a_page_url_that_is_not_a_web_address_is_never_a_link(client, agent, kb):
    conversation = _waiting(kb, page_url="javascript:alert(1)")
    client.force_login(agent)
    page = client.get(reverse("admin:chat_conversation_work", args=[conversation.pk])).content.decode()
    assert "javascript:alert(1)" not in page


def test_the_workspace_strips_bidi_controls_from_customer_text(client, agent, kb):
    conversation = _waiting(kb, f"invoice {RLO}fdp.exe please")
    client.force_login(agent)
    page = client.get(reverse("admin:chat_conversation_work", args=[conversation.pk])).content.decode()
    assert RLO not in page
    assert "invoice fdp.exe please" in page


def test_metrics_show_the_satisfaction_customers_gave(client, agent, kb):
    ops = staff_user("olga", "ops")
    for rating in (5, 4, 2):
        conversation = _waiting(kb)
        actions.claim(conversation.tickets.get(), agent)
        actions.resolve(conversation, agent)
        closing = conversation.messages.filter(role=Message.Role.SYSTEM).latest("id")
        actions.rate_resolution(conversation, closing.pk, rating)
    client.force_login(ops)
    page = client.get(reverse("admin:chat_metrics")).content.decode()
    assert '<td data-metric="csat">3.67 / 5 · 67% rated 4 or 5' in page
    assert "(3 of 3 resolved tickets rated)" in page
    assert '<td data-csat="2">1</td>' in page


# --- Markdown ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain", "<p>plain</p>"),
        ("**bold** and *it*", "<p><strong>bold</strong> and <em>it</em></p>"),
        ("a\nb\n\nc", "<p>a<br>b</p><p>c</p>"),
        ("- one\n- two", "<ul><li>one</li><li>two</li></ul>"),
        ("3. three\n4. four", '<ol start="3"><li>three</li><li>four</li></ol>'),
        ('<img src=x onerror="alert(1)">', "<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>"),
        ("[site](javascript:alert(1))", "<p>site (javascript:alert(1))</p>"),
        (f"a{RLO}b", "<p>ab</p>"),
    ],
)
def test_markdown_is_escaped_first_then_a_small_subset(text, html):
    assert render_markdown(text) == html


def test_the_json_parts_are_json(client, agent, kb):
    conversation = _waiting(kb)
    client.force_login(agent)
    response = _in_place(client, conversation, op="note", text="VIP")
    assert response["Content-Type"] == "application/json"
    assert "VIP" in json.loads(response.content)["history"]


def test_ids_that_are_not_numbers_get_a_clear_answer_not_a_server_error(client, agent, kb):
    conversation = _waiting(kb)
    client.force_login(agent)
    assert _in_place(client, conversation, op="claim", ticket="abc").status_code == 404
    actions.claim(conversation.tickets.get(), agent)
    drafted = _in_place(client, conversation, op="draft", message="1; DROP TABLE").json()
    assert drafted["notices"][0]["level"] == "error"
    assert _in_place(client, conversation, op="reply", text="hi", after="abc").status_code == 200
    poll = client.get(reverse("admin:chat_conversation_poll", args=[conversation.pk]), {"after": "abc"})
    assert poll.status_code == 200
