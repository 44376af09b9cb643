"""Labels derived from turns, with their provenance; ops' corrections stand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import actions as chat_actions
from chat.models import Ticket
from knowledge.actions import publish_entry
from knowledge.models import Entry
from learning import labels
from learning.models import LabelledExample, TurnLog

from .conftest import logged

pytestmark = pytest.mark.django_db

Kind, Rule = LabelledExample.Kind, LabelledExample.Rule


def entry(key: str) -> Entry:
    return Entry.objects.get(key=key)


def derived(reply, *, age_minutes: int = 0) -> list[tuple[str, str | None, str]]:
    log = logged(reply)
    if age_minutes:
        TurnLog.objects.filter(pk=log.pk).update(created_at=timezone.now() - timedelta(minutes=age_minutes))
        log.refresh_from_db()
    return sorted(
        (label.kind, label.entry.key if label.entry else None, label.rule) for label in labels.derive_for_turn(log)
    )


def test_helpful_answer_is_a_positive_for_its_entry(make_turn):
    conversation, _, reply = make_turn("what are the delivery charges?", entry("ship"))
    chat_actions.give_feedback(conversation, reply.pk, helpful=True)
    assert derived(reply) == [(Kind.POSITIVE, "ship", Rule.POSITIVE_FEEDBACK)]


def test_answer_without_follow_up_is_positive_only_once_the_quiet_period_passed(make_turn, settings):
    settings.LEARNING_NO_FOLLOW_UP_MINUTES = 30
    _, _, reply = make_turn("is delivery free?", entry("ship"))
    assert derived(reply) == []
    assert derived(reply, age_minutes=31) == [(Kind.POSITIVE, "ship", Rule.NO_FOLLOW_UP)]


def test_no_follow_up_rule_can_be_switched_off(make_turn, settings):
    settings.LEARNING_NO_FOLLOW_UP_MINUTES = 0
    _, _, reply = make_turn("is delivery free?", entry("ship"))
    assert derived(reply, age_minutes=600) == []


def test_a_follow_up_question_means_no_label_from_silence(make_turn, settings):
    conversation, _, reply = make_turn("is delivery free?", entry("ship"))
    chat_actions.add_customer_message(conversation, "that does not answer my question")
    assert derived(reply, age_minutes=600) == []


def test_not_helpful_answer_is_a_negative_and_escalates(make_turn):
    conversation, _, reply = make_turn("my blender broke", entry("ship"))
    chat_actions.give_feedback(conversation, reply.pk, helpful=False)
    assert derived(reply) == [(Kind.NEGATIVE, "ship", Rule.NEGATIVE_FEEDBACK)]
    assert TurnLog.objects.get(question=reply.reply_to).escalated


def test_escalation_after_an_answer_is_a_negative(make_turn):
    conversation, question, reply = make_turn("can I pay by cheque?", entry("pay"))
    chat_actions.escalate(conversation, Ticket.Reason.FRUSTRATION, trigger=question)
    assert derived(reply) == [(Kind.NEGATIVE, "pay", Rule.ESCALATED_AFTER_ANSWER)]


def test_resolved_escalation_that_no_entry_covers_is_out_of_scope(make_turn, agent):
    conversation, _, reply = make_turn("do you sell gift cards?")
    ticket = conversation.tickets.get()
    chat_actions.claim(ticket, agent)
    chat_actions.agent_reply(conversation, agent, "Sorry, we don't sell gift cards.")
    assert derived(reply) == []  # not resolved yet: the agent may still link an entry
    chat_actions.resolve(conversation, agent)
    assert derived(reply) == [(Kind.OUT_OF_SCOPE, None, Rule.UNCOVERED)]


def test_a_request_for_a_person_says_nothing_about_coverage(make_turn, agent):
    conversation, _, reply = make_turn("I want to talk to a human", escalate=Ticket.Reason.HUMAN_REQUEST)
    chat_actions.claim(conversation.tickets.get(), agent)
    chat_actions.resolve(conversation, agent)
    assert derived(reply) == []


def test_agent_quoting_an_entry_resolves_with_it_and_corrects_a_wrong_answer(make_turn, agent):
    conversation, question, reply = make_turn("how long do I have to send it back", entry("warranty"))
    chat_actions.escalate(conversation, Ticket.Reason.REPEATED_FAILURE, trigger=question)
    chat_actions.claim(conversation.tickets.get(), agent)
    chat_actions.agent_reply(conversation, agent, "Hi! " + entry("return").answer)
    assert derived(reply) == [
        (Kind.NEGATIVE, "warranty", Rule.ESCALATED_AFTER_ANSWER),
        (Kind.POSITIVE, "return", Rule.AGENT_RESOLUTION),
    ]


def test_published_draft_from_the_agents_answer_is_a_positive_for_it(kb, make_turn, agent):
    conversation, _question, reply = make_turn("do you ship to the Canary Islands?")
    chat_actions.claim(conversation.tickets.get(), agent)
    answer = chat_actions.agent_reply(conversation, agent, "Yes, in 5 to 7 days.")
    draft = chat_actions.draft_entry_from_reply(conversation, answer.pk)
    assert derived(reply) == []  # a draft is not answerable yet
    publish_entry(draft)
    assert derived(reply) == [(Kind.POSITIVE, draft.key, Rule.PUBLISHED_DRAFT)]


def test_ops_correction_is_never_undone_by_derivation(make_turn):
    conversation, _, reply = make_turn("what are the delivery charges?", entry("ship"))
    chat_actions.give_feedback(conversation, reply.pk, helpful=True)
    log = logged(reply)
    (label,) = labels.derive_for_turn(log)
    labels.correct_label(label, Kind.POSITIVE, entry("track"))
    labels.derive_for_turn(log)
    label.refresh_from_db()
    assert label.entry is not None
    assert (label.entry.key, label.status) == ("track", LabelledExample.Status.CORRECTED)


def test_contradicted_positive_is_not_trained_on_and_negatives_only_calibrate(kb, make_turn):
    for helpful in (True, False):
        conversation, _, reply = make_turn("parcel cost?", entry("ship"))
        chat_actions.give_feedback(conversation, reply.pk, helpful=helpful)
        labels.derive_for_turn(logged(reply))
    LabelledExample.objects.update(split="train")
    assert labels.labelled_pairs(kb, ["train"], with_negatives=False) == []
    assert labels.labelled_pairs(kb, ["train"], with_negatives=True) == [("parcel cost?", None)]


# --- choices ---------------------------------------------------------------------------------------
def offered_choices(kb, text: str, *keys: str):
    """A question the bot answered with choices over ``keys``, stored by the chat's own actions."""
    from chat.models import Conversation
    from knowledge.routing import Candidate, Decision
    from knowledge.vocabulary import Outcome

    conversation = Conversation(knowledge_base=kb, language="en")
    conversation.issue_token()
    conversation.save()
    question, _ = chat_actions.add_customer_message(conversation, text)
    candidates = [Candidate(entry(key).pk, entry(key).question, 0.6) for key in keys]
    offer = chat_actions.offer_choices(conversation, question, Decision(Outcome.CHOICES, 0.5, choices=candidates))
    return conversation, question, offer


def answer_pick(conversation, pick):
    """The picked answer as the turn layer stores it (the extractive text of the entry)."""
    return chat_actions.record_bot_message(
        conversation,
        pick.question,
        pick.entry.answer,
        decision={**pick.decision().as_dict(), **pick.note()},
        entry_id=pick.entry.pk,
        confidence=pick.decision().confidence,
    )


def test_an_entry_the_customer_picked_among_the_choices_is_a_positive_for_it(kb):
    conversation, _, offer = offered_choices(kb, "the parcel thing", "ship", "return", "track")
    assert derived(offer) == []  # offered, not picked yet: nothing learned
    pick = chat_actions.choose(conversation, offer.pk, str(entry("return").pk))
    answer = answer_pick(conversation, pick)
    assert derived(offer) == [(Kind.POSITIVE, "return", labels.CHOICE_PICKED)]
    assert derived(answer) == [(Kind.POSITIVE, "return", labels.CHOICE_PICKED)]  # one turn, one label


def test_a_picked_answer_marked_not_helpful_is_no_positive(kb):
    conversation, _, offer = offered_choices(kb, "the parcel thing", "ship", "return")
    answer = answer_pick(conversation, chat_actions.choose(conversation, offer.pk, str(entry("ship").pk)))
    chat_actions.give_feedback(conversation, answer.pk, helpful=False)
    assert (Kind.POSITIVE, "ship", labels.CHOICE_PICKED) not in derived(answer)


def test_none_of_these_is_no_positive_and_hands_over_as_no_choice_fits(kb):
    conversation, question, offer = offered_choices(kb, "the parcel thing", "ship", "return")
    chat_actions.choose(conversation, offer.pk, "none")
    assert derived(offer) == []
    log = TurnLog.objects.get(question=question)
    assert (log.escalated, log.escalation_reason) == (True, Ticket.Reason.NO_CHOICE_FITS)
