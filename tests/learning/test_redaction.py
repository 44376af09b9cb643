"""Personal data never reaches training data: Spanish and English cases, checksums where a number could be innocent."""

from __future__ import annotations

import pytest

from learning.redaction import dni_letter_valid, iban_valid, luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mi correo es ana.garcia+tienda@example.es, gracias", "Mi correo es [EMAIL], gracias"),
        ("My e-mail is john.smith@mail.co.uk", "My e-mail is [EMAIL]"),
        ("Mi móvil es +34 612 345 678", "Mi móvil es [PHONE]"),
        ("Llamadme al +34612345678 o al 0034 912 34 56 78", "Llamadme al [PHONE] o al [PHONE]"),
        ("Llámame al 612 34 56 78 por la tarde", "Llámame al [PHONE] por la tarde"),
        ("Call me at (555) 123-4567 tomorrow", "Call me at [PHONE] tomorrow"),
        ("my number is 555-123-4567 or +1 555 123 4567", "my number is [PHONE] or [PHONE]"),
        ("Me cobraron dos veces en la tarjeta 4539 1488 0343 6467", "Me cobraron dos veces en la tarjeta [CARD]"),
        ("charged twice on card 4111-1111-1111-1111", "charged twice on card [CARD]"),
        ("Mi IBAN es ES91 2100 0418 4502 0005 1332 para el reembolso", "Mi IBAN es [IBAN] para el reembolso"),
        ("refund to GB82WEST12345698765432 please", "refund to [IBAN] please"),
        ("Mi DNI es 12345678Z", "Mi DNI es [DNI]"),
        ("Tengo NIE X1234567L y no me deja registrarme", "Tengo NIE [NIE] y no me deja registrarme"),
        ("Vivo en Calle Mayor 5, 3ºB, 28013 Madrid, ¿cuándo llega?", "Vivo en [ADDRESS], ¿cuándo llega?"),
        ("envíalo a Avenida de la Constitución 12, piso 3", "envíalo a [ADDRESS]"),
        ("Please ship it to 221B Baker Street, London", "Please ship it to [ADDRESS], London"),
        ("I live at 1600 Pennsylvania Avenue, apt 4", "I live at [ADDRESS]"),
    ],
)
def test_personal_data_is_replaced_by_placeholders(text, expected):
    assert redact(text) == expected


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
    ],
)
def test_ordinary_text_and_numbers_that_fail_their_checksum_stay(text):
    assert redact(text) == text


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
