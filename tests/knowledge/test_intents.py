"""The risk-and-intent stage hands a first message to a person with the right reason, and leaves FAQ questions alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chat.texts import EMERGENCY_NUMBERS, handover_preface
from knowledge import intents
from knowledge.embeddings import get_encoder
from knowledge.intents import IntentMatch, NeighbourDetector, NeighbourSettings, detect
from knowledge.vocabulary import HandoverReason as R

SHARED_DEV = [
    Path(__file__).resolve().parents[3] / "shared" / "data" / name / "dev.jsonl" for name in ("soportemax", "vuelalto")
]


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        (R.HUMAN_REQUEST, "Buenas, ¿sería posible que me atendiera alguien del equipo?"),
        (R.HUMAN_REQUEST, "oye máquina, pásame con tu jefe"),
        (R.HUMAN_REQUEST, "¿Alguien me puede llamar mañana por la mañana?"),
        (R.HUMAN_REQUEST, "quiero ablar con un ajente"),
        (R.HUMAN_REQUEST, "necesito un human porfa"),
        (R.HUMAN_REQUEST, "I'd really appreciate talking to someone from your staff"),
        (R.HUMAN_REQUEST, "Can someone from your company ring me back?"),
        (R.HUMAN_REQUEST, "operator!!"),
        (R.HUMAN_REQUEST, "get me a real human, this bot is hopeless"),
        (R.HUMAN_REQUEST, "could u put me thru to an agent plz"),
        (R.SAFETY, "Creo que me voy a quitar la vida esta noche"),
        (R.SAFETY, "El cargador del portátil ha empezado a echar humo"),
        (R.SAFETY, "Me ha dado calambre el enchufe del router"),
        (R.SAFETY, "I'm going to kill myself"),
        (R.SAFETY, "My phone charger is on fire"),
        (R.SAFETY, "The battery of my scooter exploded"),
        (R.FRAUD, "Me han hackeado la cuenta y han cambiado mi correo"),
        (R.FRAUD, "Hay compras en mi cuenta que yo no he hecho"),
        (R.FRAUD, "Someone is using my card on your website right now"),
        (R.FRAUD, "I see two orders I never placed on my account"),
        (R.LEGAL, "Si no me lo solucionáis os voy a denunciar"),
        (R.LEGAL, "Mi abogado os enviará un burofax"),
        (R.LEGAL, "Quiero la hoja de reclamaciones ahora mismo"),
        (R.LEGAL, "I'm going to sue your company"),
        (R.LEGAL, "I'll report you to the consumer authority"),
        (R.COMPENSATION, "Quiero una indemnización por los tres días sin fibra"),
        (R.COMPENSATION, "Voy a pedir la devolución del cargo a mi banco"),
        (R.COMPENSATION, "I demand compensation for my ruined trip"),
        (R.COMPENSATION, "I'll do a chargeback if you don't fix this"),
        (R.DATA_PROTECTION, "Borrad todos mis datos de vuestra base de datos"),
        (R.DATA_PROTECTION, "Quiero ejercer mi derecho de acceso a mis datos"),
        (R.DATA_PROTECTION, "Under GDPR I want you to erase everything you hold about me"),
        (R.DATA_PROTECTION, "I want to exercise my right to be forgotten"),
    ],
)
def test_typical_first_message_goes_to_a_person_with_its_reason(expected, message):
    match = detect(message)
    assert match is not None
    assert match.reason == expected


@pytest.mark.parametrize(
    "message",
    [
        "¿Cuál es el teléfono de atención al cliente?",
        "How do I contact support by phone?",
        "¿Cómo cambio mi contraseña?",
        "What is your refund policy?",
        "¿Cuál es vuestra política de privacidad?",
        "My battery drains fast",
        "Can I get a refund for a late delivery?",
        "¿Tengo derecho a una compensación si se retrasa mi vuelo?",
        "Am I entitled to compensation for a cancelled flight?",
        "Me habéis cobrado dos veces el mismo pedido",
        "I lost my phone, how do I block my SIM?",
        "¿Cómo elimino mi cuenta?",
        "How do I unsubscribe from marketing emails?",
        "¿Puedo llevar una batería externa en el avión?",
        "¿Tenéis hoja de reclamaciones en la tienda?",
        "¿Cómo denuncio un SMS falso que usa vuestro nombre?",
        "Can I smoke on board?",
        "¿Puedo transferir el billete a otra persona?",
        "¿A qué hora abre el servicio de atención al cliente?",
        "How do I get a copy of my invoice?",
        # said to an assistant, not a request for a person or a risk
        "What do you think the meaning of life is?",
        "could you order an uber to take me home",
        "yes, affirmative",
        "¿me preparas un café?",
        "borra todos los eventos de mi agenda",
        "can I have a real card please",
    ],
)
def test_near_miss_faq_question_is_left_to_retrieval(message):
    assert detect(message) is None


def test_a_rule_hit_scores_one_and_says_so():
    assert detect("Quiero hablar con una persona") == IntentMatch(R.HUMAN_REQUEST, "rule", 1.0)


def test_the_callers_vector_is_used_without_embedding_again(monkeypatch):
    message = "Buenas, ¿sería posible que me atendiera alguien del equipo?"
    encoder = get_encoder()
    vector = encoder.embed([message], is_query=True)[0]
    intents.neighbour_detector(encoder)  # built before embedding is taken away

    def no_embedding(*args, **kwargs):
        raise AssertionError("detect() embedded a message whose vector it was given")

    monkeypatch.setattr(encoder, "embed", no_embedding)
    match = detect(message, vector, encoder)
    assert match is not None
    assert match.via == "neighbours"
    assert match.reason == R.HUMAN_REQUEST
    assert 0.0 < match.score <= 1.0


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_a_class_wins_by_majority_and_by_margin_over_the_nearest_near_miss():
    bank = np.stack([_unit(1, 0, 0), _unit(1, 0.1, 0), _unit(1, 0, 0.1), _unit(0, 1, 0), _unit(0, 1, 0.1)])
    labels = [R.FRAUD, R.FRAUD, R.FRAUD, None, None]
    detector = NeighbourDetector(bank, labels, NeighbourSettings(k=3, min_votes=2, margin=0.1))
    match = detector.classify(_unit(1, 0.05, 0.05))
    assert match is not None
    assert (match.reason, match.via) == (R.FRAUD, "neighbours")
    assert match.score == pytest.approx(1.0, abs=0.01)
    assert detector.classify(_unit(0, 1, 0)) is None  # near misses dominate
    assert detector.classify(_unit(1, 1, 0)) is None  # as close to a near miss as to fraud: no margin


def test_bank_has_enough_positives_and_near_misses_per_language_and_a_heldout_split():
    phrases = intents.load_bank()
    for lang in ("es", "en"):
        own = [p for p in phrases if p.lang == lang]
        assert sum(1 for p in own if p.label is not None) >= 300
        assert sum(1 for p in own if p.label is None) >= 300
        assert {p.label for p in own if p.label is not None} == set(intents.DETECTED)
    heldout = sum(1 for p in phrases if p.split == "heldout") / len(phrases)
    assert 0.15 <= heldout <= 0.25
    assert len({p.text for p in phrases}) == len(phrases)


def test_bank_shares_no_phrase_with_the_evaluation_data():
    bank = {p.text.strip().lower() for p in intents.load_bank()}
    for path in SHARED_DEV:
        if path.exists():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            assert not bank & {row["text"].strip().lower() for row in rows}


def test_stored_vectors_and_margin_match_the_bank_and_the_train_split():
    stored = intents.read_settings()
    phrases = intents.load_bank()
    assert stored["bank_sha256"] == intents.bank_digest(phrases)
    assert stored["model"] == get_encoder().name
    train = [p for p in phrases if p.split == "train"]
    margin, _ = intents.choose_margin(
        intents.bank_vectors(train), [p.label for p in train], stored["k"], stored["min_votes"]
    )
    assert max(margin, intents.MIN_MARGIN) == stored["margin"]


def test_crisis_reply_in_spain_gives_112_and_024(settings):
    settings.SUPPORT_COUNTRY = "ES"
    for language in ("es", "en"):
        preface = handover_preface("safety", language)
        assert "112" in preface
        assert "024" in preface


def test_crisis_reply_follows_the_configured_country(settings):
    settings.SUPPORT_COUNTRY = "US"
    preface = handover_preface(R.SAFETY, "en")
    assert "911" in preface
    assert "988" in preface
    assert "112" not in preface


@pytest.mark.parametrize("country", sorted(EMERGENCY_NUMBERS))
def test_every_known_country_has_an_emergency_number_in_the_reply(country):
    assert EMERGENCY_NUMBERS[country].emergency in handover_preface("safety", "es", country)


@pytest.mark.parametrize("reason", [R.FRAUD, R.LEGAL, R.COMPENSATION, R.DATA_PROTECTION])
def test_each_risk_class_has_its_own_preface_in_both_languages(reason):
    spanish, english = handover_preface(reason, "es"), handover_preface(reason, "en")
    assert spanish
    assert english
    assert spanish != english


def test_a_plain_request_for_a_person_needs_no_preface():
    assert handover_preface(R.HUMAN_REQUEST, "es") == ""
    assert handover_preface(R.LOW_CONFIDENCE, "en") == ""
