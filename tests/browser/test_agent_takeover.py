"""An agent takes a waiting customer over in the real admin while the customer's widget follows live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.server import Product

pytestmark = pytest.mark.browser


def agent_password(product: Product) -> str:
    return str(json.loads((Path(product.env["DATA_DIR"]) / "demo-logins.json").read_text())["ana"])


def test_agent_claims_replies_live_and_hands_back_to_the_bot(
    page: Any, browser: Any, product: Product, screenshot: Any
) -> None:
    # The customer asks for a person in the widget on the shop's own site.
    page.goto(f"{product.host}/shop-es.html")
    page.locator(".launcher").click()
    box = page.get_by_role("textbox", name="Tu mensaje")
    box.fill("Quiero hablar con una persona, tengo un problema con mi bici")
    box.press("Enter")
    expect(page.get_by_text("Te paso con una persona del equipo")).to_be_visible()

    # The agent logs in (agent role only), finds the ticket in the queue and opens it.
    agent = browser.new_context(viewport={"width": 1280, "height": 900})
    admin = agent.new_page()
    admin.set_default_timeout(20_000)
    admin.goto(f"{product.base}/admin/login/?next=/admin/chat/ticket/")
    admin.fill("#id_username", "ana")
    admin.fill("#id_password", agent_password(product))
    admin.get_by_role("button", name="Log in").click()
    expect(admin.get_by_text("tengo un problema con mi bici").first).to_be_visible()
    admin.locator("a.open-ticket").first.click()

    # Take over: the bot goes silent; the reply reaches the widget without a reload.
    admin.locator("#take-over").click()
    expect(admin.locator("#ws-status")).to_have_text("With an agent")
    admin.fill("#reply-text", "Hola, soy Ana. ¿Qué le pasa a la bici?")
    admin.locator("#send-reply").click()
    admin.fill("#note-text", "Cliente con avería; revisar garantía.")
    admin.get_by_role("button", name="Add note").click()
    expect(admin.get_by_text("Cliente con avería; revisar garantía.")).to_be_visible()
    screenshot(admin, "06-agent-workspace")

    expect(page.get_by_text("Hola, soy Ana. ¿Qué le pasa a la bici?")).to_be_visible()
    expect(page.get_by_text("Ana", exact=False).first).to_be_visible()
    expect(page.get_by_text("revisar garantía")).to_have_count(0)  # internal notes never reach the customer

    # A reply still on its way does not pull the agent out of the note they started meanwhile.
    admin.evaluate(
        "() => { const real = window.fetch; window.fetch = (url, options) => options && options.method === 'POST'"
        " ? new Promise((done) => setTimeout(done, 1500)).then(() => real(url, options)) : real(url, options); }"
    )
    admin.fill("#reply-text", "Un momento, lo miro.")
    admin.locator("#send-reply").click()
    admin.locator("#note-text").click()
    admin.keyboard.type("Pide foto del freno")
    expect(admin.locator("#ws-history")).to_contain_text("Un momento, lo miro.")
    expect(admin.locator("#note-text")).to_have_value("Pide foto del freno")
    expect(admin.locator("#note-text")).to_be_focused()
    expect(admin.locator("#reply-text")).to_have_value("")

    # While Ana owns it the bot stays silent; after hand-back the bot answers again.
    admin.locator("#hand-back").click()
    expect(admin.locator("#ws-status")).to_have_text("With the bot")
    expect(page.get_by_text("Vuelves a hablar con el asistente virtual")).to_be_visible()
    box.fill("¿Cuánto cuesta la suscripción?")
    box.press("Enter")
    expect(page.locator(".msg.bot[data-id]").last).to_contain_text("39 €")
    screenshot(page, "07-back-to-the-bot")
    agent.close()
