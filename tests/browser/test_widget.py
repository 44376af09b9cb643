"""The customer widget, embedded cross-origin in a host page, driving the real product in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.server import Product, stored_conversation

pytestmark = pytest.mark.browser

PRICE_ES = "¿Cuánto cuesta la suscripción?"
PRICE_EN = "How much is the subscription?"
PRICE_SOURCE = "https://rodamar.example/precios"

# Counts the `token` events the widget reads from the reply stream. (The extractive demo model sends its pieces
# back to back, so they often share one network chunk: the DOM may never show a half answer to observe.)
COUNT_TOKEN_EVENTS = """() => {
  const decode = TextDecoder.prototype.decode;
  window.__tokenEvents = 0;
  TextDecoder.prototype.decode = function (...args) {
    const text = decode.apply(this, args);
    window.__tokenEvents += (text.match(/^event: token$/gm) || []).length;
    return text;
  };
}"""


def open_panel(page: Any) -> None:
    if not page.locator("[role=dialog]").is_visible():
        page.locator(".launcher").click()
    expect(page.locator("[role=dialog]")).to_be_visible()


def last_answer(page: Any) -> Any:
    return page.locator(".msg.bot[data-id]").last


def conversation_json(page: Any, product: Product) -> dict[str, Any]:
    """The conversation as the API returns it, fetched from the host page with the widget's own token."""
    record = stored_conversation(page)
    return dict(
        page.evaluate(
            """async ([base, id, token]) => (await fetch(`${base}/api/conversations/${id}`,
                 {headers: {Authorization: `Bearer ${token}`}, credentials: 'omit'})).json()""",
            [product.base, record["id"], record["token"]],
        )
    )


def test_customer_gets_a_streamed_sourced_answer_history_handoff_and_a_live_agent_reply(
    page: Any, product: Product, screenshot: Any
) -> None:
    page.goto(f"{product.host}/shop-es.html")
    expect(page.locator(".launcher")).to_be_visible()
    screenshot(page, "01-launcher-closed")

    page.locator(".launcher").click()
    box = page.get_by_role("textbox", name="Tu mensaje")
    expect(box).to_be_focused()
    page.evaluate(COUNT_TOKEN_EVENTS)
    box.fill(PRICE_ES)
    box.press("Enter")

    answer = last_answer(page)
    expect(answer.locator(".bubble")).to_contain_text("39")
    expect(answer.locator(".src a")).to_have_attribute("href", PRICE_SOURCE)
    expect(answer.locator(".src a")).to_have_attribute("rel", "noopener noreferrer")
    expect(answer.get_by_role("button", name="Me ha servido", exact=True)).to_be_visible()
    assert page.evaluate("window.__tokenEvents") >= 2, "the answer did not arrive token by token"
    screenshot(page, "02-answer-with-sources")

    page.reload()
    open_panel(page)
    expect(last_answer(page).locator(".bubble")).to_contain_text("39")
    expect(page.locator(".msg.customer .bubble")).to_have_text([PRICE_ES])

    page.get_by_role("button", name="Hablar con una persona").click()
    expect(page.locator(".msg.system").last).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("cola")
    expect(page.get_by_role("button", name="Hablar con una persona")).to_be_hidden()
    screenshot(page, "03-handoff")

    conversation_id = stored_conversation(page)["id"]
    product.shell(
        "from django.contrib.auth import get_user_model\n"
        "from chat.actions import agent_reply, claim\n"
        "from chat.models import Conversation, Ticket\n"
        "ana = get_user_model().objects.get(username='ana')\n"
        f"conversation = Conversation.objects.get(pk='{conversation_id}')\n"
        "claim(conversation.tickets.filter(status=Ticket.Status.OPEN).latest('created_at'), ana)\n"
        "agent_reply(conversation, ana, 'Hola, soy Ana. Te ayudo con tu suscripción.')\n"
    )
    agent = page.locator(".msg.agent").last
    expect(agent).to_contain_text("Hola, soy Ana.", timeout=40_000)  # the events stream reconnects every ~25 s
    expect(agent.locator(".who")).to_contain_text("Ana")
    expect(page.get_by_role("status")).to_contain_text("persona")
    screenshot(page, "04-agent-reply")


def test_html_markdown_and_links_in_a_customer_message_render_as_plain_text(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-en.html")
    open_panel(page)
    box = page.get_by_role("textbox", name="Your message")
    typed = "<img src=x onerror=alert(1)>**bold** [x](javascript:alert(2)) https://evil.example/login"
    box.fill(typed)
    box.press("Enter")

    mine = page.locator(".msg.customer[data-id]")
    expect(mine).to_have_count(1)
    expect(mine.locator(".bubble")).to_have_text(typed)  # exactly as typed: no markup, no Markdown
    assert mine.locator("strong").count() == 0
    assert mine.locator("a").count() == 0
    expect(page.locator(".msg:not(.customer)[data-id]").first).to_be_visible()  # whatever the product answered
    assert page.locator("[data-support-chat] img").count() == 0
    assert page.locator("[data-support-chat] a[href^='javascript']").count() == 0
    assert page.problems == []  # no alert() fired


def test_links_come_only_from_vetted_source_urls_never_from_answer_text(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-en.html")
    open_panel(page)
    box = page.get_by_role("textbox", name="Your message")
    box.fill("Which cities do you serve?")
    box.press("Enter")

    answer = last_answer(page)
    expect(answer.locator(".bubble")).to_contain_text("https://rodamar.example/ciudades")  # the URL in the text...
    assert answer.locator(".bubble a").count() == 0  # ...is not a link
    expect(answer.locator(".src a")).to_have_attribute("href", "https://rodamar.example/ciudades")  # the source is
    links = page.locator("[data-support-chat] a").evaluate_all(
        "links => links.map(a => ({href: a.href, source: !!a.closest('.src')}))"
    )
    assert links
    assert all(link["source"] for link in links)
    assert all(link["href"].startswith(("https:", "http:", "mailto:")) for link in links)


def test_keyboard_only_customer_opens_asks_and_closes(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-en.html")
    on_launcher = "() => document.activeElement?.shadowRoot?.activeElement?.classList.contains('launcher') === true"
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate(on_launcher):
            break
    assert page.evaluate(on_launcher), "Tab never reached the launcher"
    expect(page.get_by_role("button", name="Open support chat")).to_have_attribute("aria-expanded", "false")

    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Rodamar")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("textbox", name="Your message")).to_be_focused()
    expect(page.get_by_role("log")).to_have_attribute("aria-live", "polite")

    page.keyboard.press("Enter")  # nothing typed: nothing sent
    expect(page.locator(".msg.customer")).to_have_count(0)
    page.keyboard.type(PRICE_EN)
    page.keyboard.press("Enter")
    expect(last_answer(page).locator(".bubble")).to_contain_text("39")
    expect(page.locator(".msg.customer")).to_have_count(1)

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate(on_launcher), "focus did not return to the launcher"


def test_message_over_the_servers_limit_cannot_be_sent(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-en.html")
    open_panel(page)
    page.get_by_role("textbox", name="Your message").fill("a" * 2001)
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.locator(".hint")).to_contain_text("2000 characters")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.customer")).to_have_count(0)


def test_a_dropped_stream_offers_retry_and_the_message_is_stored_once(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-en.html")
    open_panel(page)

    def drop_after_server_handled_it(route: Any) -> None:
        if route.request.method == "POST":
            route.fetch()  # the server stores the message and answers...
            route.abort("connectionreset")  # ...but the customer's connection drops
        else:
            route.continue_()

    pattern = f"{product.base}/api/conversations/*/messages"
    page.route(pattern, drop_after_server_handled_it)
    box = page.get_by_role("textbox", name="Your message")
    box.fill(PRICE_EN)
    box.press("Enter")
    error = page.locator(".err")
    expect(error).to_contain_text("Connection lost")
    expect(page.locator(".msg.customer .bubble")).to_have_text([PRICE_EN])  # what they typed is still there

    page.unroute(pattern)
    error.get_by_role("button", name="Retry").click()
    expect(last_answer(page).locator(".bubble")).to_contain_text("39")
    expect(page.locator(".msg.customer")).to_have_count(1)
    stored = [m for m in conversation_json(page, product)["messages"] if m["role"] == "customer"]
    assert [m["text"] for m in stored] == [PRICE_EN]


def test_on_a_phone_the_panel_fills_the_screen(browser: Any, product: Product, screenshot: Any) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(f"{product.host}/shop-es.html")
        page.locator(".launcher").click()
        panel = page.locator("[role=dialog]")
        expect(panel).to_be_visible()
        assert panel.bounding_box() == {"x": 0, "y": 0, "width": 375, "height": 740}
        for part in (page.get_by_role("textbox", name="Tu mensaje"), page.get_by_role("button", name="Enviar")):
            box = part.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= 375
            assert box["y"] + box["height"] <= 740
        page.get_by_role("textbox", name="Tu mensaje").fill(PRICE_ES)
        page.keyboard.press("Enter")
        expect(last_answer(page).locator(".bubble")).to_contain_text("39")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        screenshot(page, "05-mobile")
        page.get_by_role("button", name="Cerrar el chat").click()
        expect(page.locator(".launcher")).to_be_visible()
    finally:
        context.close()
