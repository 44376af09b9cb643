"""Risky first messages go to a person at once, with their own reason, never answered from an entry.

Through the API with the real routing on the demo knowledge base (an e-bike subscription FAQ, which has
entries close to several of these: batteries, payments, cancelling, personal data).
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message, Ticket
from knowledge.vocabulary import HandoverReason
from tests.chat.conftest import Chat

RISKY = [
    ("es", "La batería de la bici está echando humo en mi salón, ¿qué hago?", HandoverReason.SAFETY),
    ("en", "The bike battery is smoking in my living room, what do I do?", HandoverReason.SAFETY),
    ("es", "Ya no puedo más, estoy pensando en quitarme la vida", HandoverReason.SAFETY),
    ("en", "I don't want to live anymore, I'm thinking of ending it all", HandoverReason.SAFETY),
    # despair without the words of self-harm (the bike is only the occasion)
    ("es", "Me han cobrado otra vez la bici y ya no le veo sentido a la vida", HandoverReason.SAFETY),
    ("en", "You charged me again for the bike and honestly what's the point of living anymore", HandoverReason.SAFETY),
    (
        "es",
        "Alguien está usando mi tarjeta ahora mismo, me han hecho tres cargos que no reconozco",
        HandoverReason.FRAUD,
    ),
    (
        "en",
        "Someone hacked my account and changed my password, they are ordering things right now",
        HandoverReason.FRAUD,
    ),
    ("es", "Si no me devolvéis el dinero os denuncio y lo llevo a mi abogado", HandoverReason.LEGAL),
    ("en", "If this is not fixed by Friday my lawyer will file a lawsuit against you", HandoverReason.LEGAL),
    ("es", "Exijo una indemnización por los días sin bici", HandoverReason.COMPENSATION),
    ("en", "I'm going to do a chargeback with my bank for this month's fee", HandoverReason.COMPENSATION),
    ("es", "Quiero ejercer mi derecho de supresión: borrad todos mis datos personales", HandoverReason.DATA_PROTECTION),
    ("en", "Under GDPR I request a copy of all the personal data you hold about me", HandoverReason.DATA_PROTECTION),
]


@sync_to_async
def outcome(conversation_id: str) -> tuple[list[Ticket], list[Message]]:
    tickets = list(Ticket.objects.filter(conversation_id=conversation_id))
    answers = list(Message.objects.filter(conversation_id=conversation_id, role=Message.Role.BOT))
    return tickets, answers


@pytest.mark.parametrize(("language", "text", "reason"), RISKY)
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_risky_first_message_is_handed_over_with_its_reason_and_no_entry(
    http, demo_kb, language: str, text: str, reason: HandoverReason
) -> None:
    customer = Chat(http)
    await customer.start(language=language)
    sent = await customer.send(text)
    assert sent.status == 200
    tickets, bot_messages = await outcome(customer.id)
    assert [t.reason for t in tickets] == [reason]
    assert bot_messages == []  # nothing answered, nothing offered
    notice = sent.replies[-1]
    assert notice["role"] == "system"
    assert not notice.get("sources")
    assert sent.of("status")[-1]["status"] == "waiting_for_agent"
    if reason == HandoverReason.SAFETY:
        assert "112" in notice["text"]
        assert "024" in notice["text"]
