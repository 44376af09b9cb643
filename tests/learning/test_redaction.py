"""Personal data and credentials never reach training data: each kind in Spanish and English, look-alikes that stay,
the bilingual PII set, and a logged turn end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.redaction import DATA, score
from chat import actions as chat_actions
from knowledge.models import Entry, Example
from knowledge.redaction import (
    Span,
    dni_letter_valid,
    find_personal_data,
    iban_valid,
    luhn_valid,
    redact,
    secrets_in,
)
from learning import actions, exports, labels
from learning.models import LabelledExample, TurnLog

from .conftest import logged


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # e-mail
        ("Mi correo es ana.garcia+tienda@example.es, gracias", "Mi correo es [EMAIL], gracias"),
        ("My e-mail is john.smith@mail.co.uk", "My e-mail is [EMAIL]"),
        # phones: Spanish landlines and mobiles, UK and US, with and without country code
        ("Mi móvil es +34 612 345 678", "Mi móvil es [PHONE]"),
        ("Llamadme al +34612345678 o al 0034 912 34 56 78", "Llamadme al [PHONE] o al [PHONE]"),
        ("Llámame al 612 34 56 78 por la tarde", "Llámame al [PHONE] por la tarde"),
        ("mi fijo es el 91 123 45 67", "mi fijo es el [PHONE]"),
        ("el de casa: +34 912 345 678", "el de casa: [PHONE]"),
        ("Call me on 07911 123456 or 020 7946 0958", "Call me on [PHONE] or [PHONE]"),
        ("Call me at (555) 123-4567 tomorrow", "Call me at [PHONE] tomorrow"),
        ("my number is 555-123-4567 or +1 555 123 4567", "my number is [PHONE] or [PHONE]"),
        ("my mobile is +44 7700 900123", "my mobile is [PHONE]"),
        # cards and their codes
        ("Me cobraron dos veces en la tarjeta 4539 1488 0343 6467", "Me cobraron dos veces en la tarjeta [CARD]"),
        ("charged twice on card 4111-1111-1111-1111", "charged twice on card [CARD]"),
        ("el CVV es 123 y caduca en 05/28", "el CVV es [CVV] y caduca en 05/28"),
        ("los tres dígitos de detrás son 519", "los tres dígitos de detrás son [CVV]"),
        ("CVC: 0471", "CVC: [CVV]"),
        ("the three digits on the back are 731", "the three digits on the back are [CVV]"),
        # bank accounts
        ("Mi IBAN es ES91 2100 0418 4502 0005 1332 para el reembolso", "Mi IBAN es [IBAN] para el reembolso"),
        ("refund to GB82WEST12345698765432 please", "refund to [IBAN] please"),
        # national ids
        ("Mi DNI es 12345678Z", "Mi DNI es [DNI]"),
        ("mi dni es 12345678A, creo que la letra está mal", "mi dni es [DNI], creo que la letra está mal"),
        ("Tengo NIE X1234567L y no me deja registrarme", "Tengo NIE [NIE] y no me deja registrarme"),
        ("My NIE is Y1234567X", "My NIE is [NIE]"),
        ("My National Insurance number is QQ 12 34 56 C", "My National Insurance number is [ID]"),
        ("SSN 536-22-8726", "SSN [ID]"),
        ("mi número de la seguridad social es 281234567840", "mi número de la seguridad social es [ID]"),
        ("passport number 533380006", "passport number [ID]"),
        # dates of birth, by their cue
        ("Mi fecha de nacimiento es 14/03/1985", "Mi fecha de nacimiento es [DOB]"),
        ("nací el 3 de mayo de 1979", "nací el [DOB]"),
        ("I was born on 3 May 1979", "I was born on [DOB]"),
        ("DOB: 1990-07-22", "DOB: [DOB]"),
        # postcodes: UK by shape, Spanish and US when cued
        ("My postcode is M1 1AE", "My postcode is [POSTCODE]"),
        ("Do you deliver to EC1A 1BB?", "Do you deliver to [POSTCODE]?"),
        ("CP 28013", "CP [POSTCODE]"),
        ("El código postal es 08001", "El código postal es [POSTCODE]"),
        ("zip code 94105", "zip code [POSTCODE]"),
        # street addresses
        ("Vivo en Calle Mayor 5, 3ºB, 28013 Madrid, ¿cuándo llega?", "Vivo en [ADDRESS], ¿cuándo llega?"),
        ("envíalo a Avenida de la Constitución 12, piso 3", "envíalo a [ADDRESS]"),
        ("la dirección es C/ Alcalá 142, 2º izq", "la dirección es [ADDRESS]"),
        ("Please ship it to 221B Baker Street, London", "Please ship it to [ADDRESS], London"),
        ("I live at 1600 Pennsylvania Avenue, apt 4", "I live at [ADDRESS]"),
        # the customer's own name, when they state it
        ("Soy Ana Pérez García y tengo un problema", "Soy [NAME] y tengo un problema"),
        ("me llamo lucía fernández y no puedo entrar", "me llamo [NAME] y no puedo entrar"),
        ("Mi nombre es José Luis Martín de la Fuente", "Mi nombre es [NAME]"),
        ("Hi, my name is John Smith", "Hi, my name is [NAME]"),
        ("This is Sarah O'Connor, I called yesterday", "This is [NAME], I called yesterday"),
        ("Thanks,\nMichael Johnson", "Thanks,\n[NAME]"),
    ],
)
def test_personal_data_is_replaced_by_placeholders(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("la contraseña es Hola1234", "Hola1234"),
        ("Mi contraseña es perro2019 y no me deja entrar", "perro2019"),
        ("mi clave es gatito", "gatito"),
        ("el PIN 4821", "4821"),
        ("Mi pin es 0000, ¿está bloqueado?", "0000"),
        ("código de verificación 123456", "123456"),
        ("El código de verificación que me llegó es 839201", "839201"),
        ("me ha llegado el OTP 552910 pero caduca enseguida", "552910"),
        ("contrasena: patata55", "patata55"),
        ('puse la contraseña "mi perro toby" y dice que es incorrecta', "mi perro toby"),
        ("el código que me habéis mandado por SMS es 774013", "774013"),
        ("my password is hunter2", "hunter2"),
        ("password: Tr0ub4dor&3", "Tr0ub4dor&3"),
        ("pin is 1234", "1234"),
        ("verification code 482913", "482913"),
        ("the code you just texted me was 263514", "263514"),
        ("my login is tom.b and the password is Summer2023!", "Summer2023!"),
        ("my new password would be 'blue sky 77'", "blue sky 77"),
        ("PASSWORD IS Qwerty!23", "Qwerty!23"),
        ("mi contraseña es: gatito", "gatito"),
        ("codigo de verificacion: 4 4 5 1 2 0", "4 5 1 2"),
        ("user: ana, pw: abc", "abc"),
        ("contraseña actual Hola123", "Hola123"),
        ("el PIN de la tarjeta 1234", "1234"),
    ],
)
def test_a_credential_typed_by_the_customer_never_survives(text, secret):
    redacted = redact(text)
    assert "[SECRET]" in redacted
    assert secret not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "La tarjeta 4539 1488 0343 6468 no es válida",  # fails the Luhn check: an order or reference number
        "My order 1234567890123 has not arrived",
        "IBAN ES9121000418450200051333 con el último dígito mal",  # bad mod-97 checksum
        "El envío cuesta 4,95 € y tarda 24 horas; pedido 123456",
        "Customer service is open Monday to Friday from 9:00 to 18:00",
        "¿Puedo pagar con tarjeta en la calle?",
        "What time do you open on Main Street?",
        "¿Dónde está mi pedido SM-123456?",
        "Número de pedido 2024-123456, lo pedí el 3 de mayo",
        "El pedido 600123456 sigue en reparto",
        "Where is my order #A1B2C3?",
        "booking reference X7K9PQ",
        "It was €1,000 and I paid £49.99 for delivery",
        "delivered on 2024-05-03 but the box was empty",
        "mi vuelo es el VA1234 a Londres",
        "Llamé al 900 123 456 y nadie contesta",  # a company's free line, not a person's
        "tracking number 1Z999AA10123456784",
        "tengo un descuento del 15 % en el 2024",
        "el código de descuento es VERANO10 y no funciona",
        "He olvidado mi contraseña y no puedo entrar",
        "la contraseña no es correcta, ¿me ayudáis?",
        "my password is not working",
        "How do I change my PIN?",
        "I never received the verification code",
        "Soy cliente de Vodafone desde hace años",
        "soy de Madrid y quiero saber si enviáis",
        "This is Amazon's fault, not mine",
        "I'm British and live in Spain",
        "El 15 de marzo es mi cumpleaños, ¿hay descuento?",
        "Atendemos en el teléfono gratuito 900 100 200 todos los días",
        "your account has no password: log in with Google",
        "la contraseña debe tener 8 caracteres",
        "On the login page, tap 'Forgot your password?' and enter your email address: you'll get a link",
        "¿puedo poner el billete a nombre de otra persona?",
    ],
)
def test_look_alikes_and_ordinary_text_stay(text):
    assert redact(text) == text


def test_spans_are_typed_and_found_on_the_original_text():
    text = "Soy Marta Vidal, DNI 33445566Y, móvil 611 22 33 44, contraseña Malaga99"
    assert [(text[s.start : s.end], s.kind) for s in find_personal_data(text)] == [
        ("Marta Vidal", "NAME"),
        ("33445566Y", "DNI"),
        ("611 22 33 44", "PHONE"),
        ("Malaga99", "SECRET"),
    ]
    assert Span(0, 3, "CVV").placeholder == "[CVV]"


def test_the_customers_known_name_is_removed_but_not_common_words():
    assert redact("Soy Ana María López y quiero devolver algo", ["Ana María López"]) == (
        "Soy [NAME] y quiero devolver algo"
    )
    assert redact("Juan del Río escribe: el pedido del lunes", ["Juan del Río"]) == (
        "[NAME] escribe: el pedido del lunes"
    )


def test_checksums():
    assert luhn_valid("4539148803436467")
    assert not luhn_valid("4539148803436468")
    assert iban_valid("ES91 2100 0418 4502 0005 1332")
    assert not iban_valid("ES91 2100 0418 4502 0005 1333")
    assert dni_letter_valid("12345678Z")
    assert not dni_letter_valid("12345678A")
    assert dni_letter_valid("X1234567L")
    assert dni_letter_valid("Y1234567X")


def test_the_bilingual_pii_set_finds_every_secret_and_keeps_every_look_alike():
    rows = [json.loads(line) for line in Path(DATA).read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200
    assert {row["lang"] for row in rows} == {"es", "en"}
    result = score(rows)
    assert result["types"]["SECRET"]["recall"] == 1.0
    assert result["types"]["CVV"]["recall"] == 1.0
    assert result["lookalikes"]["kept"] == result["lookalikes"]["total"]
    assert result["micro"]["precision"] >= 0.98
    assert result["micro"]["recall"] >= 0.97
    kinds = {span["type"] for row in rows for span in row["spans"]}
    assert kinds == {"EMAIL", "PHONE", "CARD", "CVV", "IBAN", "DNI", "NIE", "ID", "DOB", "POSTCODE", "ADDRESS"} | {
        "NAME",
        "SECRET",
    }


def _leaked(secrets: list[str], stored: str) -> list[str]:
    return [secret for secret in secrets if re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", stored)]


def _everything_kept(folder: Path) -> str:
    return json.dumps(
        [
            list(TurnLog.objects.values_list("text", "reply_text", "resolution_text")),
            list(LabelledExample.objects.values_list("text", flat=True)),
            list(Example.objects.filter(origin=actions.LEARNED_ORIGIN).values_list("text", flat=True)),
            *(path.read_text(encoding="utf-8") for path in sorted(folder.rglob("*.jsonl"))),
        ],
        ensure_ascii=False,
    )


@pytest.mark.django_db
def test_a_logged_turn_never_stores_a_password_pin_or_card_code(make_turn, agent):
    """Through the learning loop's own path: turn log, derived labels, learned phrasings, the training export."""
    ship = Entry.objects.get(key="ship")
    conversation, _, reply = make_turn(
        "No puedo pagar el envío: la contraseña es Perro2019, el PIN 4821 y el CVV 715. ¿Qué hago?",
        ship,
        email="ana@example.es",
    )
    chat_actions.give_feedback(conversation, reply.pk, helpful=True)
    escalated, question, escalation = make_turn("my password is hunter2 and the verification code 839201 fails")
    chat_actions.claim(escalated.tickets.get(), agent)
    chat_actions.agent_reply(
        escalated, agent, "Please never send us your password; your new verification code is 551203."
    )
    chat_actions.resolve(escalated, agent)

    for turn in (logged(reply), logged(escalation)):
        labels.derive_for_turn(turn)
    LabelledExample.objects.update(split="train")
    actions.sync_learned_examples(
        ship.knowledge_base, [(label.text, label.entry_id) for label in LabelledExample.objects.all()]
    )
    folder = exports.export_dataset(ship.knowledge_base, exports.exports_root() / "shop" / "job-1")

    stored = _everything_kept(folder)
    assert "la contraseña es [SECRET], el PIN [SECRET] y el CVV [CVV]" in stored
    assert TurnLog.objects.get(question=question).text == (
        "my password is [SECRET] and the verification code [SECRET] fails"
    )
    assert "your new verification code is [SECRET]" in TurnLog.objects.get(question=question).resolution_text
    assert LabelledExample.objects.filter(text__contains="[SECRET]").exists()
    assert _leaked(["Perro2019", "4821", "715", "hunter2", "839201", "551203"], stored) == []


def test_a_secret_echoed_without_its_cue_is_removed_when_the_conversations_secrets_are_passed():
    question = "el PIN 4821 no funciona y la contraseña es Perro2019"
    assert secrets_in(question) == ["4821", "Perro2019"]
    assert redact("He probado 4821 y Perro2019, tampoco.", secrets=secrets_in(question)) == (
        "He probado [SECRET] y [SECRET], tampoco."
    )


@pytest.mark.django_db
def test_an_agent_echoing_the_customers_pin_without_a_cue_is_not_logged(make_turn, agent):
    conversation, _question, reply = make_turn("el PIN 4821 no me deja entrar")
    chat_actions.claim(conversation.tickets.get(), agent)
    chat_actions.agent_reply(conversation, agent, "He probado 4821 desde aquí y tampoco funciona.")
    log = logged(reply)
    assert _leaked(["4821"], log.text + log.resolution_text) == []
