"""Choices in the widget: real buttons, operable by keyboard, announced, closed once one is used.

The browser tests' app (tests/browser/app.py) makes routing offer choices for two fixed messages.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.server import Product, stored_conversation
from tests.browser.test_widget import last_answer, open_panel

pytestmark = pytest.mark.browser

OFFERED_ES = [
    "¿Cuánto cuesta la suscripción?",
    "¿Puedo pausar la suscripción en vacaciones?",
    "¿Cómo cancelo mi suscripción?",
]
OFFERED_EN = [
    "How much is the subscription?",
    "Can I pause my subscription during holidays?",
    "How do I cancel my subscription?",
]


def ask_unclear(page: Any, product: Product, lang: str) -> Any:
    page.goto(f"{product.host}/shop-{lang}.html")
    open_panel(page)
    box = page.get_by_role("textbox", name="Tu mensaje" if lang == "es" else "Your message")
    expect(box).to_be_focused()
    page.keyboard.type("lo de la bici mensual" if lang == "es" else "the monthly bike thing")
    page.keyboard.press("Enter")
    group = page.get_by_role(
        "group", name="¿Te refieres a una de estas?" if lang == "es" else "Did you mean one of these?"
    )
    expect(group).to_be_visible()
    return group


def test_a_keyboard_user_picks_an_offered_answer_and_gets_it(page: Any, product: Product, screenshot: Any) -> None:
    group = ask_unclear(page, product, "es")
    buttons = group.get_by_role("button")
    expect(buttons).to_have_text([*OFFERED_ES, "Ninguna de estas", "Hablar con una persona"])
    expect(page.locator(".announce")).to_contain_text("3 posibles respuestas")  # read out by screen readers
    expect(page.locator(".announce")).to_have_attribute("aria-live", "polite")
    expect(buttons.first).to_be_focused()  # the keyboard lands on the choices
    screenshot(page, "06-choices")

    page.keyboard.press("ArrowDown")
    expect(group.get_by_role("button", name=OFFERED_ES[1])).to_be_focused()
    page.keyboard.press("Enter")

    answer = last_answer(page)
    expect(answer.locator(".bubble")).to_contain_text("hasta 2 meses al año")
    expect(answer.get_by_role("button", name="Me ha servido", exact=True)).to_be_visible()
    expect(answer.locator(".src a")).to_have_count(1)
    for button in buttons.all():
        expect(button).to_be_disabled()
    expect(group.get_by_role("button", name=OFFERED_ES[1])).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("textbox", name="Tu mensaje")).to_be_focused()
    screenshot(page, "07-choice-answered")

    page.reload()  # the history shows the same set, closed, with the pick
    open_panel(page)
    group = page.get_by_role("group", name="¿Te refieres a una de estas?")
    expect(group.get_by_role("button", name=OFFERED_ES[1])).to_have_attribute("aria-pressed", "true")
    for button in group.get_by_role("button").all():
        expect(button).to_be_disabled()
    expect(last_answer(page).locator(".bubble")).to_contain_text("hasta 2 meses al año")


def test_none_of_these_by_keyboard_hands_over_and_closes_the_set(page: Any, product: Product) -> None:
    group = ask_unclear(page, product, "en")
    expect(group.get_by_role("button")).to_have_text([*OFFERED_EN, "None of these", "Talk to a person"])
    page.keyboard.press("End")
    expect(group.get_by_role("button", name="Talk to a person")).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(group.get_by_role("button", name="None of these")).to_be_focused()
    page.keyboard.press("Space")

    expect(page.locator(".msg.system").last).to_contain_text("queue")
    expect(page.get_by_role("status")).to_contain_text("queue")
    for button in group.get_by_role("button").all():
        expect(button).to_be_disabled()
    expect(group.get_by_role("button", name="None of these")).to_have_attribute("aria-pressed", "true")

    conversation_id = stored_conversation(page)["id"]
    printed = product.shell(
        "from chat.models import Ticket\n"
        f"ticket = Ticket.objects.get(conversation_id='{conversation_id}')\n"
        "print('reason:', ticket.reason)\n"
        "print('summary:', ticket.summary)\n"
    )
    lines = dict(line.split(": ", 1) for line in printed.splitlines() if line.startswith(("reason: ", "summary: ")))
    assert lines["reason"] == "no_choice_fits"
    summary = lines["summary"]
    for title in OFFERED_EN:
        assert title in summary
