"""Issue 14 in Chromium: the widget follows the conversation and its language, shows the queue live, starts over
only when asked, keeps the keyboard's focus, takes a contact and a signed identity, asks for satisfaction; the
agent works the queue and the workspace in place; the whole journey, in Spanish and in English."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.server import IDENTITY_SECRET, REPO, Product, stored_conversation

pytestmark = pytest.mark.browser

DOCS = REPO / "docs"
PHONE = {"width": 375, "height": 740}
ASK_PRICE = {"es": "¿Cuánto cuesta la suscripción?", "en": "How much is the subscription?"}
ASK_THEFT = {"es": "Me han robado la bici, ¿qué tengo que hacer?", "en": "My bike was stolen, what do I do?"}
ASK_REPAIR = {"es": "Mi bici tiene una avería, ¿qué hago?", "en": "My bike is broken, what should I do?"}
ASK_PERSON = {"es": "Quiero hablar con una persona, por favor", "en": "I want to talk to a person, please"}
LONG_COMPLAINT = {
    "es": "El freno trasero chirría en cada cuesta y la cadena se sale cuando cambio de marcha;",
    "en": "My rear brake squeaks on every hill and the chain slips when I change gear;",
}
WORDS = {
    "es": {
        "box": "Tu mensaje",
        "sources": "Fuentes:",
        "helpful": "Me ha servido",
        "human": "Hablar con una persona",
        "queue": "en la cola",
        "new": "Nueva conversación",
        "yes": "Empezar otra",
        "cancel": "Cancelar",
        "email": "Correo electrónico",
        "save": "Guardar",
        "handed_back": "Vuelves a hablar con el asistente virtual",
        "closing": "marcado como resuelta",
        "csat": "4 de 5",
        "thanks": "¡Gracias por tu valoración!",
    },
    "en": {
        "box": "Your message",
        "sources": "Sources:",
        "helpful": "Helpful",
        "human": "Talk to a person",
        "queue": "in the queue",
        "new": "New chat",
        "yes": "Start new",
        "cancel": "Cancel",
        "email": "E-mail",
        "save": "Save",
        "handed_back": "You're back with the virtual assistant",
        "closing": "marked as resolved",
        "csat": "4 out of 5",
        "thanks": "Thanks for your rating!",
    },
}

# Is the end of the newest message (its sources and 👍/👎 included) inside the visible part of the log?
END_IN_VIEW = """() => {
  const root = document.querySelector('[data-support-chat]').shadowRoot;
  const log = root.querySelector('.log');
  const rows = root.querySelectorAll('.log > .msg');
  const last = rows[rows.length - 1].getBoundingClientRect();
  const box = log.getBoundingClientRect();
  return last.bottom <= box.bottom + 1 && last.bottom > box.top;
}"""
FOCUSED = "() => document.querySelector('[data-support-chat]').shadowRoot.activeElement?.getAttribute('aria-label')"


def signed_page(product: Product, lang: str, user_id: str, email: str, hmac_hex: str | None = None) -> str:
    """A host page that says who its logged-in customer is, signed as the site's back end would sign it."""
    canonical = f"{user_id}\n{email.lower()}".encode()
    signature = hmac_hex or hmac.new(IDENTITY_SECRET.encode(), canonical, hashlib.sha256).hexdigest()
    name = f"account-{lang}-{user_id}.html"
    url = f"{product.host}/{name}"
    html = f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>My account</title></head>
<body><h1>Rodamar · my account</h1>
<script src="{product.base}/static/chat/widget.js" data-title="Rodamar" data-lang="{lang}" data-kb="default"
  data-user-id="{user_id}" data-user-email="{email}" data-user-hmac="{signature}" defer></script></body></html>"""
    # Served by the host site itself (a routed page would be a "public" origin, refused loopback by Chromium).
    site = Path(product.env["DATA_DIR"]).parent / "site"
    (site / name).write_text(html, encoding="utf-8")
    return url


def login(browser: Any, product: Product, user: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    password = json.loads((Path(product.env["DATA_DIR"]) / "demo-logins.json").read_text())[user]
    page.goto(f"{product.base}/admin/login/?next=/admin/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#content-main")).to_be_visible()
    return context, page


def ask(page: Any, lang: str, text: str) -> Any:
    box = page.get_by_role("textbox", name=WORDS[lang]["box"])
    box.fill(text)
    box.press("Enter")
    return box


def conversation_row(product: Product, page: Any) -> dict[str, Any]:
    conversation_id = stored_conversation(page)["id"]
    out = product.shell(
        "import json\nfrom chat.models import Conversation\n"
        f"c = Conversation.objects.get(pk='{conversation_id}')\n"
        "t = c.tickets.order_by('-id').first()\n"
        "print(json.dumps({'status': c.status, 'email': c.customer_email, 'name': c.customer_name,"
        " 'ref': c.customer_ref, 'verified': c.identity_verified, 'page_url': c.page_url,"
        " 'ticket': t and t.status, 'csat': t and t.csat}))\n"
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def claimed_ticket_with_a_long_last_message(product: Product, lang: str) -> str:
    """Another customer's ticket, older than the journey's and already with Ana, whose last message is long.
    Returns the customer's e-mail, which its queue row shows."""
    email = f"long.{lang}@example.com"
    long_text = " ".join([LONG_COMPLAINT[lang]] * 20)
    product.shell(
        "from datetime import timedelta\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.utils import timezone\n"
        "from chat import actions\n"
        "from chat.models import Ticket\n"
        "from chat.schemas import StartConversation\n"
        f"c, _, _ = actions.start_conversation(StartConversation(language='{lang}', customer_email='{email}'))\n"
        f"actions.add_customer_message(c, {long_text!r})\n"
        "ticket, _ = actions.request_handoff(c)\n"
        "Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(minutes=30))\n"
        "actions.claim(ticket, get_user_model().objects.get(username='ana'))\n"
    )
    return email


def csat_ratings(product: Product) -> list[int]:
    """The ratings of resolved tickets so far, as the metrics page counts them (other tests may have left some)."""
    out = product.shell(
        "import json\nfrom chat.models import Ticket\n"
        "print(json.dumps(list(Ticket.objects.filter(status='resolved', csat__isnull=False)"
        ".values_list('csat', flat=True))))\n"
    )
    return [int(rating) for rating in json.loads(out.strip().splitlines()[-1])]


# --- the widget -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, PHONE], ids=["desktop", "phone"])
def test_the_log_follows_long_answers_unless_the_customer_scrolled_up(browser: Any, product: Product, viewport):
    context = browser.new_context(viewport=viewport, is_mobile=viewport == PHONE, has_touch=viewport == PHONE)
    try:
        page = context.new_page()
        page.goto(f"{product.host}/shop-es.html")
        page.locator(".launcher").click()
        for question in (ASK_THEFT["es"], ASK_PRICE["es"], ASK_REPAIR["es"]):
            count = page.locator(".msg.bot[data-id]").count()
            ask(page, "es", question)
            expect(page.locator(".msg.bot[data-id]")).to_have_count(count + 1)
            expect(page.locator(".msg.bot[data-id]").last.locator(".fb")).to_be_visible()
            page.wait_for_function(END_IN_VIEW)  # the answer's end, sources and 👍/👎 are on screen
        assert page.locator(".log").evaluate("log => log.scrollHeight > log.clientHeight + 100")  # it did scroll

        # Scrolled up to read: something new arrives and the log stays where the customer is.
        page.locator(".log").evaluate("log => { log.scrollTop = 0; log.dispatchEvent(new Event('scroll')); }")
        page.locator(".log").evaluate("log => new Promise(r => setTimeout(r, 100))")
        page.get_by_role("button", name="Hablar con una persona").click()
        expect(page.locator(".msg.system").last).to_be_attached()
        assert page.locator(".log").evaluate("log => log.scrollTop") < 50
    finally:
        context.close()


def test_an_english_conversation_is_english_everywhere_on_a_spanish_page(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-es.html")  # data-lang="es"
    page.locator(".launcher").click()
    ask(page, "es", ASK_PRICE["en"])  # the box is labelled in Spanish until the conversation has a language
    answer = page.locator(".msg.bot[data-id]").last
    expect(answer.locator(".bubble")).to_contain_text("€39")
    expect(answer.locator(".src")).to_contain_text("Sources:")
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Your message")).to_be_visible()
    expect(page.get_by_role("button", name="Talk to a person")).to_be_visible()
    expect(page.get_by_role("button", name="New chat")).to_be_visible()
    expect(page.locator(".msg.greet")).to_contain_text("How can I help")
    page.get_by_role("button", name="Talk to a person").click()
    expect(page.get_by_role("status")).to_contain_text("in the queue")
    text = page.locator("[role=dialog]").inner_text()
    for spanish in ("Fuentes", "Hablar con una persona", "Tu mensaje", "cola", "Enviar"):
        assert spanish not in text, spanish


@pytest.mark.parametrize(("page_lang", "lang"), [("es", "en"), ("en", "es")], ids=["en-on-es-page", "es-on-en-page"])
def test_an_api_error_is_told_in_the_conversations_language_not_the_pages(
    page: Any, product: Product, page_lang: str, lang: str
) -> None:
    page.goto(f"{product.host}/shop-{page_lang}.html")
    page.locator(".launcher").click()
    ask(page, page_lang, ASK_PRICE[lang])  # the box is labelled in the page's language until then
    expect(page.locator(".msg.bot[data-id]").last.locator(".src")).to_contain_text(WORDS[lang]["sources"])

    # The widget never sends a message over the limit, so this one is made longer on its way: the real API
    # refuses it with its 413 and its English message for developers.
    refused: list[tuple[int, dict[str, Any]]] = []

    def over_the_limit(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        body = json.loads(route.request.post_data or "{}")
        body["text"] = "a" * 2001
        response = route.fetch(post_data=json.dumps(body))
        refused.append((response.status, response.json()))
        route.fulfill(response=response)

    page.route(f"{product.base}/api/conversations/*/messages", over_the_limit)
    box = ask(page, lang, ASK_REPAIR[lang])
    told = {
        "en": "Your message is too long: the limit is 2000 characters.",
        "es": "Tu mensaje es demasiado largo: el límite es de 2000 caracteres.",
    }
    expect(page.locator(".hint")).to_have_text(told[lang])
    assert [(status, body["error"]["code"]) for status, body in refused] == [(413, "too_large")]
    assert refused[0][1]["error"]["message"].startswith("Messages can be at most 2000 characters")
    expect(box).to_have_value(ASK_REPAIR[lang])  # given back to edit
    text = page.locator("[role=dialog]").inner_text()
    assert told[page_lang] not in text
    assert "Messages can be at most" not in text


def test_the_queue_banner_updates_when_a_status_event_brings_a_new_place(page: Any, product: Product) -> None:
    # The stream (push or not) brings the queue with every status event; the banner follows each one.
    def moved(route: Any) -> None:
        queue = {"position": 3, "expected_wait_minutes": 15, "wait_over": False, "by_email": False}
        body = f"event: status\ndata: {json.dumps({'status': 'waiting_for_agent', 'queue': queue})}\n\n"
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page.route(f"{product.base}/api/conversations/*/events*", moved)
    page.goto(f"{product.host}/shop-en.html")
    page.locator(".launcher").click()
    page.get_by_role("button", name="Talk to a person").click()
    expect(page.locator(".msg.system").last).to_contain_text("in the queue")
    banner = page.get_by_role("status")
    expect(banner).to_have_text("You are number 3 in the queue, about 15 min to wait.", timeout=40_000)


def test_new_conversation_asks_first_and_closes_the_open_ticket(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-es.html")
    page.locator(".launcher").click()
    ask(page, "es", ASK_PERSON["es"])
    expect(page.get_by_role("status")).to_contain_text("en la cola")
    new = page.get_by_role("button", name="Nueva conversación")
    new.click()
    expect(page.locator(".confirm")).to_contain_text("perderás tu turno en la cola")
    page.get_by_role("button", name="Cancelar").click()
    expect(page.locator(".confirm")).to_be_hidden()
    expect(page.locator(".msg.customer")).to_have_count(1)  # nothing lost

    first = stored_conversation(page)["id"]
    new.click()
    page.get_by_role("button", name="Empezar otra").click()
    expect(page.locator(".msg.customer")).to_have_count(0)
    expect(page.get_by_role("button", name="Hablar con una persona")).to_be_visible()
    out = product.shell(
        f"from chat.models import Ticket\nprint(Ticket.objects.get(conversation_id='{first}').status)\n"
    )
    assert out.strip().splitlines()[-1] == "withdrawn"


def test_after_enter_on_thumbs_up_the_focus_stays_on_the_button(page: Any, product: Product) -> None:
    page.goto(f"{product.host}/shop-en.html")
    page.locator(".launcher").click()
    ask(page, "en", ASK_PRICE["en"])
    thumbs = page.locator(".msg.bot[data-id]").last.get_by_role("button", name="Helpful", exact=True)
    thumbs.focus()
    page.keyboard.press("Enter")
    expect(thumbs).to_have_attribute("aria-pressed", "true")
    assert page.evaluate(FOCUSED) == "Helpful"
    assert page.evaluate("document.activeElement !== document.body")
    page.keyboard.press("Enter")  # pressing again changes nothing
    expect(thumbs).to_have_attribute("aria-pressed", "true")


def test_a_badly_signed_identity_is_ignored_but_the_customer_can_leave_an_email(page: Any, product: Product) -> None:
    page.goto(signed_page(product, "en", "u-evil", "ceo@rodamar.example", hmac_hex="ab" * 32))
    page.locator(".launcher").click()
    page.get_by_role("button", name="Talk to a person").click()
    card = page.locator("form.contact")
    expect(card).to_be_visible()
    card.get_by_label("E-mail").fill("lucy@example.com")
    card.get_by_label("Name").fill("Lucy")
    card.get_by_role("button", name="Save").click()
    expect(page.get_by_text("we will answer at lucy@example.com")).to_be_visible()
    row = conversation_row(product, page)
    assert (row["verified"], row["ref"], row["email"], row["name"]) == (False, "", "lucy@example.com", "Lucy")


# --- the whole journey, in Spanish and in English -------------------------------------------------------------
@pytest.mark.parametrize("lang", ["es", "en"])
def test_customer_agent_hand_back_and_satisfaction_journey(page: Any, browser: Any, product: Product, lang: str):
    words = WORDS[lang]
    user_id, email = f"cust-{lang}-1", f"maria.{lang}@example.com"
    url = signed_page(product, lang, user_id, email)
    page.goto(url)
    page.locator(".launcher").click()
    ask(page, lang, ASK_PRICE[lang])
    answer = page.locator(".msg.bot[data-id]").last
    expect(answer.locator(".src")).to_contain_text(words["sources"])
    page.wait_for_function(END_IN_VIEW)
    page.screenshot(path=str(DOCS / f"widget-desktop-{lang}.png"))

    ask(page, lang, ASK_PERSON[lang])
    expect(page.get_by_role("status")).to_contain_text(words["queue"])
    expect(page.locator("form.contact")).to_have_count(0)  # the site told us who this is: no need to ask
    row = conversation_row(product, page)
    assert (row["verified"], row["ref"], row["email"]) == (True, user_id, email)
    assert row["page_url"].endswith(f"/account-{lang}-{user_id}.html")

    # The agent: the queue, then the workspace, worked in place.
    claimed_email = claimed_ticket_with_a_long_last_message(product, lang)  # older, but already with Ana
    agent_context, admin = login(browser, product, "ana")
    agent_context.grant_permissions(["notifications"], origin=product.base)
    admin.add_init_script(
        "window.__notes = []; window.Notification = class { constructor(t, o) { window.__notes.push(o.body); } "
        "static get permission() { return 'granted'; } }; document.hasFocus = () => false;"
    )
    admin.goto(f"{product.base}/admin/chat/ticket/")
    row_el = admin.locator("#result_list tbody tr", has_text=email)
    expect(row_el).to_contain_text(ASK_PERSON[lang][:20])
    expect(row_el.locator(".q-status")).to_have_text("Waiting")
    for header in ("status", "claimed by"):
        box = admin.locator("#result_list thead th", has_text=header).first.bounding_box()
        assert box is not None, header
        assert box["x"] + box["width"] <= 1280, header
    assert row_el.bounding_box()["height"] < 48  # one line per ticket
    claimed = admin.locator("#result_list tbody tr", has_text=claimed_email)
    expect(claimed.locator(".q-status")).to_have_text("With an agent")
    owner = claimed.locator("td.field-owner")
    expect(owner).to_have_text("Ana")
    whole, right = owner.evaluate("td => [td.scrollWidth <= td.clientWidth, td.getBoundingClientRect().right]")
    assert whole  # the owner's name is not cut...
    assert right <= 1280  # ...nor off screen
    assert claimed.bounding_box()["height"] < 48  # its very long last message stays on one line
    expect(claimed.locator("td.field-last_message")).to_contain_text(LONG_COMPLAINT[lang][:20])
    # Waiting first, though the claimed ticket is older: ours above it, and no waiting one below any claimed one.
    assert row_el.evaluate("tr => tr.rowIndex") < claimed.evaluate("tr => tr.rowIndex")
    statuses = admin.locator("#result_list tbody .q-status").all_inner_texts()
    assert statuses == sorted(statuses, key=lambda status: status != "Waiting"), statuses
    filters = " ".join((admin.locator("#changelist-filter").text_content() or "").split()).lower()
    assert "by reply channel" in filters
    assert "by by" not in filters
    # the table never pushes the filters off screen, and nothing needs a sideways scroll of the page
    sidebar = admin.locator("#changelist-filter").bounding_box()
    assert sidebar is not None
    assert sidebar["x"] + sidebar["width"] <= 1280
    assert admin.evaluate("document.documentElement.scrollWidth") <= 1280
    message_cell = claimed.locator("td.field-last_message").bounding_box()
    assert message_cell is not None
    assert message_cell["x"] + message_cell["width"] <= sidebar["x"]  # the last column is whole, cut by an ellipsis
    admin.screenshot(path=str(DOCS / "agent-queue.png"))

    row_el.locator("a.open-ticket").click()
    expect(admin.locator("#ws-customer")).to_contain_text(email)
    expect(admin.locator("#ws-customer")).to_contain_text("verified by the site")
    expect(admin.locator("#ws-page a")).to_have_attribute("href", url)
    admin.evaluate("window.__samePage = true")
    admin.locator("#take-over").click()
    expect(admin.locator("#ws-status")).to_have_text("With an agent")
    reply = {"es": "Hola, soy Ana. ¿En qué te ayudo?", "en": "Hi, I'm Ana. How can I help?"}[lang]
    admin.fill("#reply-text", reply)
    admin.locator("#send-reply").click()
    expect(admin.locator("#ws-history")).to_contain_text(reply)
    expect(admin.locator("#reply-text")).to_be_focused()
    expect(admin.locator("#reply-text")).to_have_value("")
    expect(page.locator(".msg.agent").last).to_contain_text(reply, timeout=40_000)

    # The customer asks while a person holds the conversation; the agent is told, then hands back.
    ask(page, lang, ASK_REPAIR[lang])
    expect(admin.locator("#ws-history")).to_contain_text(ASK_REPAIR[lang], timeout=20_000)
    admin.wait_for_function("window.__notes.length > 0")
    assert admin.evaluate("document.title").startswith("(")
    admin.screenshot(path=str(DOCS / "agent-workspace.png"))
    admin.locator("#hand-back").click()
    expect(admin.locator("#ws-status")).to_have_text("With the bot")
    expect(page.get_by_text(words["handed_back"])).to_be_visible(timeout=40_000)
    expect(page.locator(".msg.bot[data-id]").last).to_contain_text("48", timeout=40_000)  # nobody's question dropped

    # Again to a person, who resolves: one closing message, then 1-5.
    ask(page, lang, ASK_PERSON[lang])
    expect(page.get_by_role("status")).to_contain_text(words["queue"])
    expect(admin.locator("#take-over")).to_be_visible(timeout=20_000)
    admin.locator("#take-over").click()
    expect(admin.locator("#ws-status")).to_have_text("With an agent")
    admin.locator("#resolve").click()
    expect(admin.locator("#ws-status")).to_have_text("Resolved")
    assert admin.evaluate("window.__samePage") is True  # never a full reload
    closing = page.locator(".msg.system", has_text=words["closing"])
    expect(closing).to_have_count(1, timeout=40_000)
    ratings = [*csat_ratings(product), 4]  # what the metrics page should count once this customer rates 4
    closing.get_by_role("button", name=words["csat"]).click()
    expect(closing.get_by_text(words["thanks"])).to_be_visible()
    expect(closing.get_by_text(words["thanks"])).to_be_in_viewport()  # the log follows the thanks into view
    page.screenshot(path=str(DOCS / f"widget-csat-{lang}.png"))
    assert conversation_row(product, page)["csat"] == 4
    agent_context.close()

    ops_context, ops = login(browser, product, "olga")
    ops.goto(f"{product.base}/admin/chat/ticket/metrics/")
    csat = ops.locator('[data-metric="csat"]')
    expect(csat).to_contain_text(f"{round(sum(ratings) / len(ratings), 2)} / 5")  # e.g. "4.0 / 5"
    expect(csat).to_contain_text(f"({len(ratings)} of ")
    expect(ops.locator('#csat-distribution [data-csat="4"]')).to_have_text(str(ratings.count(4)))
    if lang == "en":
        ops.screenshot(path=str(DOCS / "metrics.png"), full_page=True)
    ops_context.close()


@pytest.mark.parametrize("lang", ["es", "en"])
def test_phone_screenshots_of_an_answer(browser: Any, product: Product, lang: str) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(f"{product.host}/shop-{lang}.html")
        page.locator(".launcher").click()
        ask(page, lang, ASK_THEFT[lang])
        expect(page.locator(".msg.bot[data-id]").last.locator(".fb")).to_be_visible()
        page.wait_for_function(END_IN_VIEW)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        header = page.locator("header").bounding_box()
        assert header is not None
        assert header["width"] <= 375
        page.screenshot(path=str(DOCS / f"widget-phone-{lang}.png"))
    finally:
        context.close()
