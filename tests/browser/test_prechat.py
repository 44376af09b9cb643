"""Issue 14's pre-chat contact card in Chromium: offered before the first message while the team is away (saying
when it is back, in the customer's language) or always when the host page asks for it with data-prechat="contact";
skipping it loses nothing typed, and saving it (before any message) reaches the agent's workspace."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import watched_page
from tests.browser.server import Product, stored_conversation
from tests.browser.test_live_support import ASK_PERSON, ASK_PRICE, WORDS, ask, conversation_row, login

pytestmark = pytest.mark.browser

MADRID = ZoneInfo("Europe/Madrid")  # the product's TIME_ZONE; the browser is put there too, to know the words
WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
}
CARD = {
    "es": {"name": "Nombre", "save": "Guardar", "skip": "Ahora no", "saved": "te responderemos en"},
    "en": {"name": "Name", "save": "Save", "skip": "Not now", "saved": "we will answer at"},
}


def away_line(product: Product, lang: str) -> str:
    """What the card says, from the back_at the product's widget config gives (in Madrid time)."""
    with urllib.request.urlopen(f"{product.base}/api/widget-config?kb=default", timeout=10) as response:  # noqa: S310
        team = json.loads(response.read())["team"]
    assert team["away"] is True
    back = datetime.fromisoformat(team["back_at"]).astimezone(MADRID)
    days = (back.date() - datetime.now(MADRID).date()).days
    time = back.strftime("%H:%M")
    if lang == "es":
        when = {0: f"hoy a las {time}", 1: f"mañana a las {time}"}.get(
            days, f"el {WEEKDAYS['es'][back.weekday()]} a las {time}"
        )
        return f"Nuestro equipo no está disponible ahora mismo. Volvemos {when}."
    when = {0: f"today at {time}", 1: f"tomorrow at {time}"}.get(days, f"on {WEEKDAYS['en'][back.weekday()]} at {time}")
    return f"Our team is away right now. We're back {when}."


def prechat_page(product: Product, lang: str) -> str:
    """A host page that asks for the contact card before every first chat (data-prechat="contact")."""
    name = f"prechat-{lang}.html"
    html = f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title></head>
<body><h1>Rodamar</h1>
<script src="{product.base}/static/chat/widget.js" data-title="Rodamar" data-lang="{lang}" data-kb="default"
  data-prechat="contact" defer></script></body></html>"""
    (Path(product.env["DATA_DIR"]).parent / "site" / name).write_text(html, encoding="utf-8")
    return f"{product.host}/{name}"


@pytest.fixture
def madrid_page(browser: Any) -> Iterator[Any]:
    """Like the ``page`` fixture (script errors and dialogs fail the test), with the browser's clock in Madrid."""
    yield from watched_page(browser, timezone_id="Europe/Madrid")


@pytest.mark.parametrize("lang", ["es", "en"])
def test_while_the_team_is_away_the_card_comes_first_and_the_agent_sees_what_was_saved(
    madrid_page: Any, browser: Any, away_product: Product, screenshot: Any, lang: str
) -> None:
    page, words, card_words = madrid_page, WORDS[lang], CARD[lang]
    email = f"lucia.{lang}@example.com"
    page.goto(f"{away_product.host}/shop-{lang}.html")
    page.locator(".launcher").click()
    card = page.locator("form.contact")
    expect(card).to_be_visible()
    expect(card.locator(".away")).to_have_text(away_line(away_product, lang))
    expect(page.locator(".msg.customer")).to_have_count(0)  # before the first message
    expect(page.get_by_role("textbox", name=words["box"])).to_be_focused()  # typing straight away is possible
    screenshot(page, f"widget-prechat-away-{lang}")

    card.get_by_label(card_words["name"]).fill("Lucía")
    card.get_by_label(words["email"]).fill(email)
    card.get_by_role("button", name=card_words["save"]).click()
    expect(page.get_by_text(f"{card_words['saved']} {email}")).to_be_visible()
    expect(card).to_have_count(0)
    row = conversation_row(away_product, page)  # saving started the conversation
    assert (row["name"], row["email"], row["status"], row["ticket"]) == ("Lucía", email, "bot", None)

    ask(page, lang, ASK_PERSON[lang])
    expect(page.get_by_role("status")).to_contain_text({"es": "por correo", "en": "by e-mail"}[lang])
    expect(page.locator("form.contact")).to_have_count(0)  # not asked twice
    conversation_id = stored_conversation(page)["id"]

    agent_context, admin = login(browser, away_product, "ana")
    try:
        admin.goto(f"{away_product.base}/admin/chat/conversation/{conversation_id}/work/")
        expect(admin.locator("#ws-customer-name")).to_have_text("Lucía")
        expect(admin.locator("#ws-customer-email")).to_contain_text(email)
        expect(admin.locator("#ws-customer-email")).to_contain_text("as typed")
    finally:
        agent_context.close()


@pytest.mark.parametrize("lang", ["es", "en"])
def test_a_host_page_can_ask_for_the_card_always_and_skipping_it_loses_nothing_typed(
    page: Any, product: Product, lang: str
) -> None:
    words, card_words = WORDS[lang], CARD[lang]
    page.goto(f"{product.host}/shop-{lang}.html")  # the team is in and the page does not ask: no card
    page.locator(".launcher").click()
    expect(page.locator(".msg.greet")).to_be_visible()
    page.wait_for_timeout(500)  # the widget config has come
    expect(page.locator("form.contact")).to_have_count(0)

    page.goto(prechat_page(product, lang))
    page.locator(".launcher").click()
    card = page.locator("form.contact")
    expect(card).to_be_visible()
    expect(card.locator(".away")).to_have_count(0)  # the team is in: nothing to say about hours
    box = page.get_by_role("textbox", name=words["box"])
    box.fill(ASK_PRICE[lang])  # the customer types without looking at the card
    card.get_by_label(card_words["name"]).fill("Pat")
    card.get_by_role("button", name=card_words["skip"]).click()
    expect(card).to_have_count(0)
    expect(box).to_be_focused()
    expect(box).to_have_value(ASK_PRICE[lang])
    box.press("Enter")
    expect(page.locator(".msg.bot[data-id]").last.locator(".src")).to_contain_text(words["sources"])
    assert conversation_row(product, page)["name"] == ""  # skipped: nothing saved

    page.reload()  # the conversation goes on (the panel reopens): the card is for before the first message only
    expect(page.locator(".msg.customer")).to_have_count(1)
    page.wait_for_timeout(500)
    expect(page.locator("form.contact")).to_have_count(0)

    # Skipped before chatting is not "never": asking for a person offers it again, where people need it.
    ask(page, lang, ASK_PERSON[lang])
    expect(page.get_by_role("status")).to_contain_text(words["queue"])
    expect(page.locator("form.contact")).to_be_visible()
    expect(page.locator("form.contact .note")).to_have_count(0)


def test_an_open_card_moves_down_with_what_was_typed_when_a_person_is_asked_for(page: Any, product: Product) -> None:
    page.goto(prechat_page(product, "en"))
    page.locator(".launcher").click()
    card = page.locator("form.contact")
    card.get_by_label("Name").fill("Sam")
    ask(page, "en", ASK_PERSON["en"])  # without saving or skipping the card
    expect(page.get_by_role("status")).to_contain_text("in the queue")
    expect(card).to_have_count(1)
    expect(page.locator(".log > *").last).to_have_class("contact")  # after the hand-off's messages
    expect(card.get_by_label("Name")).to_have_value("Sam")
    card.get_by_label("E-mail").fill("sam@example.com")
    card.get_by_role("button", name="Save").click()
    expect(page.get_by_text("we will answer at sam@example.com")).to_be_visible()
    assert conversation_row(product, page)["email"] == "sam@example.com"
