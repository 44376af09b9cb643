"""Which language a customer wrote in, from short, informal, often unaccented messages."""

from __future__ import annotations

import time

import pytest

from knowledge.language import PROFILES, detect_language


@pytest.mark.parametrize(
    "message",
    [
        "quiero hablar con una persona",
        "pasadme con un agente",
        "mi pedido no llega",
        "hola",
        "Buenas tardes",
        "no me funciona el wifi desde ayer",
        "cuanto cuesta el envio a canarias",  # no accents
        "q pasa con mi compra??",  # chat spelling
        "xq me cobraron dos veces",
        "porfa necesito ayuda con la factura",
        "vos podés decirme si tienen el celular en stock",  # rioplatense
        "no tengo plata para pagar la cuota",  # Latin-American "plata"
        "¿Dónde está mi paquete?",
        "¡Gracias!",
        "devolucion",
        "ESTOY HARTO, QUIERO UNA SOLUCION YA",
        "me podeis poner con alguien q me ayude",
        "tengo un problema con mi contraseña",
    ],
)
def test_spanish_messages_are_detected_as_spanish(message: str) -> None:
    assert detect_language(message) == "es"


@pytest.mark.parametrize(
    "message",
    [
        "human please",
        "my order hasn't arrived",
        "my order hasnt arrived yet",  # no apostrophe
        "thanks!",
        "hi",
        "I want to talk to a real person",
        "can u help me pls",
        "where is my refund??",
        "WHY WAS I CHARGED TWICE",
        "the app keeps crashing when I log in",
        "cancel my subscription",
        "shipping",
        "Is the café open on Sundays?",  # a borrowed accented word does not make it Spanish
    ],
)
def test_english_messages_are_detected_as_english(message: str) -> None:
    assert detect_language(message) == "en"


@pytest.mark.parametrize("message", ["ok", "123", "", "   ", "!!!", "ES-4471-ZX", "👍", "no", "email"])
def test_messages_without_evidence_return_the_default(message: str) -> None:
    assert detect_language(message) is None
    assert detect_language(message, default="es") == "es"


def test_evidence_overrides_the_default() -> None:
    assert detect_language("thank you so much", default="es") == "en"
    assert detect_language("muchas gracias", default="en") == "es"


def test_mixed_message_goes_to_the_language_with_more_cues() -> None:
    assert detect_language("hola, my order has not arrived and I need help") == "en"
    assert detect_language("hello, mi pedido no ha llegado y necesito ayuda") == "es"


def test_long_text_is_decided_from_its_start_and_stays_fast() -> None:
    long_text = "Quiero saber el estado de mi pedido, por favor. " * 5000

    started = time.perf_counter()
    assert detect_language(long_text) == "es"
    assert time.perf_counter() - started < 0.05


def test_typical_message_takes_well_under_a_tenth_of_a_millisecond() -> None:
    messages = ["mi pedido no llega", "my order hasn't arrived", "quiero hablar con una persona", "human please"]
    rounds = 2000

    started = time.perf_counter()
    for _ in range(rounds):
        for message in messages:
            detect_language(message)
    per_call = (time.perf_counter() - started) / (rounds * len(messages))

    assert per_call < 0.0001


def test_every_profile_has_a_distinct_code_and_no_shared_stopwords() -> None:
    codes = [profile.code for profile in PROFILES]
    assert len(codes) == len(set(codes))
    for index, profile in enumerate(PROFILES):
        for other in PROFILES[index + 1 :]:
            assert profile.stopwords.isdisjoint(other.stopwords), (profile.code, other.code)
