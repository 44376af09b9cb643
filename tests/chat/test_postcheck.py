"""The post-check: a generated answer may only state numbers, links and days that its context contains."""

from __future__ import annotations

import pytest

from chat.postcheck import check_answer

CONTEXT = (
    '<entry n="1" title="¿Cuánto cuesta?">\n'
    "La Urbana cuesta 39 € al mes; la pausa 9,95 € al mes. Envío gratis desde 1.000 km. "
    "Abrimos de lunes a viernes de 9:00 a 18:00 y el sábado. Más en https://rodamar.example/precios.\n"
    "</entry>"
)


@pytest.mark.parametrize(
    "answer",
    [
        "La Urbana cuesta 39 € al mes [1].",
        "The pause costs €9.95 a month [1].",  # decimal point where the context has a decimal comma
        "La pausa cuesta 9,95 € [1].",
        "Free shipping from 1000 km [1].",  # thousands separator dropped
        "Envío gratis desde 1.000 km.",
        "Abrimos de lunes a viernes, de 9:00 a 18:00, y el sábado [1].",  # accents folded
        "Tienes los precios en https://rodamar.example/precios.",  # trailing full stop is not part of the URL
        "Mira (https://rodamar.example/precios) [1]",
        "Sí, puedes hacerlo desde la app [1][1].",  # citations are not numbers
        "Sí, claro.",
    ],
)
def test_answer_supported_by_the_context_passes(answer):
    result = check_answer(answer, CONTEXT)
    assert result.ok, result.problems


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("La Urbana cuesta 99 € al mes [1].", "number not in context: 99"),
        ("La pausa cuesta 9,50 € [1].", "number not in context: 9,50"),
        ("La pausa cuesta 9.99 € [1].", "number not in context: 9.99"),
        ("Abrimos de 8:00 a 18:00 [1].", "number not in context: 8"),
        ("Entra en https://rodamar.example/ofertas [1].", "URL not in context: https://rodamar.example/ofertas"),
        ("Entra en http://rodamar.example/precios [1].", "URL not in context: http://rodamar.example/precios"),
        ("También abrimos el domingo [1].", "day not in context: domingo"),
        ("We are also open on Sunday [1].", "day not in context: sunday"),
        ("Abrimos el miércoles [1].", "day not in context: miercoles"),
        ("NO_ANSWER", "no answer"),
        ("   ", "no answer"),
        ("I don't know.", "says it does not know"),
        ("I'm not sure about that.", "says it does not know"),
        ("No lo sé, lo siento.", "says it does not know"),
        ("No tengo esa información.", "says it does not know"),
    ],
)
def test_answer_stating_what_the_context_does_not_fails(answer, problem):
    result = check_answer(answer, CONTEXT)
    assert not result.ok
    assert problem in result.problems


def test_numbers_inside_a_context_url_do_not_vouch_for_an_answer():
    context = "Detalles en https://rodamar.example/planes/2024/99"
    assert not check_answer("El plan cuesta 99 € [1].", context).ok


def test_every_problem_is_listed():
    result = check_answer("Cuesta 99 € el domingo, mira https://x.example [1].", CONTEXT)
    assert set(result.problems) == {
        "number not in context: 99",
        "day not in context: domingo",
        "URL not in context: https://x.example",
    }


@pytest.mark.parametrize("answer", ["La Urbana cuesta 3,9 € al mes [1].", "It costs €3.9 a month [1]."])
def test_a_price_with_a_misplaced_decimal_separator_fails(answer):
    assert not check_answer(answer, CONTEXT).ok


def test_spanish_impersonal_no_se_is_not_a_dont_know():
    context = "El cambio de modelo no se cobra: es gratis una vez cada 3 meses."
    assert check_answer("El cambio de modelo no se cobra, una vez cada 3 meses [1].", context).ok


def test_invented_plural_days_fail():
    assert not check_answer("También abrimos los domingos [1].", CONTEXT).ok
