"""Before the first message: the widget learns whether the team is away (and when it is back), and a contact
left then is kept on a conversation that has no message yet, for the agent who later takes it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import hours, metrics
from chat.models import Conversation, Ticket
from tests.chat.conftest import Chat

MADRID = ZoneInfo("Europe/Madrid")
OFFICE = "mon-fri 09:00-18:00; sat 10:00-14:00"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026, Madrid time: the 7th is a Monday."""
    return datetime(2026, 12, day, hour, minute, tzinfo=MADRID)


# --- when the team is back -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "back"),
    [
        (at(7, 8, 30), at(7, 9)),  # Monday before opening: today
        (at(7, 18, 1), at(8, 9)),  # Monday evening: Tuesday morning
        (at(11, 19), at(12, 10)),  # Friday evening: Saturday's shorter hours
        (at(12, 15), at(14, 9)),  # Saturday afternoon: Monday
        (at(13, 12), at(14, 9)),  # Sunday
    ],
)
def test_next_opening_is_the_next_start_of_business_hours(settings, now, back):
    settings.TIME_ZONE = "Europe/Madrid"
    assert hours.next_opening(now, OFFICE) == back


def test_hours_that_never_open_have_no_next_opening(settings):
    settings.TIME_ZONE = "Europe/Madrid"
    assert hours.next_opening(at(7, 12), "") is None


@pytest.mark.parametrize(
    ("spec", "language", "described"),
    [
        (OFFICE, "es", "lunes a viernes, 09:00–18:00; sábado, 10:00–14:00, hora de Madrid"),
        (OFFICE, "en", "Monday to Friday, 09:00–18:00; Saturday, 10:00–14:00, Madrid time"),
        ("mon,wed 9:00-12:30", "es", "lunes, miércoles, 09:00–12:30, hora de Madrid"),
        ("sun 10:00-14:00", "fr", "Sunday, 10:00–14:00, Madrid time"),  # a language without names: English
    ],
)
def test_hours_are_told_to_the_customer_in_their_language_and_time_zone(settings, spec, language, described):
    # not "mon-fri 09:00-18:00" in a Spanish sentence, next to a "back at" the widget gives in the customer's zone
    settings.TIME_ZONE = "Europe/Madrid"
    assert hours.describe(language, spec) == described


def test_hours_name_the_zone_they_are_kept_in(settings):
    settings.TIME_ZONE = "America/Mexico_City"
    assert hours.describe("es", "mon-fri 09:00-18:00") == "lunes a viernes, 09:00–18:00, hora de Mexico City"


# --- the widget's config -----------------------------------------------------------------------------
def _hours_excluding_today() -> str:
    today = timezone.localtime().weekday()
    return f"{hours.DAYS[(today + 3) % 7]} 09:00-10:00"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_widget_config_says_the_team_is_away_and_when_it_is_back(http, demo_kb, settings):
    settings.BUSINESS_HOURS = _hours_excluding_today()
    team = (await http.get("/api/widget-config?kb=default")).json()["team"]
    assert team["away"] is True
    back = datetime.fromisoformat(team["back_at"])
    assert back.utcoffset() is not None  # with its offset: the browser says it in the customer's time zone
    assert back > timezone.now()
    assert hours.is_open(back)
    assert (back - timezone.now()).days < 7


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_widget_config_says_the_team_is_in_during_business_hours(http, demo_kb, settings):
    settings.BUSINESS_HOURS = "always"
    team = (await http.get("/api/widget-config?kb=default")).json()["team"]
    assert team == {"away": False, "back_at": None}


# --- a contact left before the first message -------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_contact_saved_before_the_first_message_stays_with_the_conversation(http, demo_kb, settings):
    settings.BUSINESS_HOURS = _hours_excluding_today()
    customer = Chat(http)
    await customer.start(language="en")  # what the widget does when the pre-chat card is saved
    saved = await customer.post("/contact", {"name": "Lucy", "email": "lucy@example.com"})
    assert saved.status_code == 200
    # Nothing asked yet: not a conversation for the figures, not a ticket for the queue.
    assert (await sync_to_async(metrics.compute)(7))["conversations"] == 0
    assert not await Ticket.objects.filter(conversation_id=customer.id).aexists()

    sent = await customer.send("I want to talk to a person, please")
    assert sent.of("status")[-1]["queue"]["by_email"] is True
    assert "lucy@example.com" in sent.replies[-1]["text"]  # the away notice names the address we will use
    stored = await Conversation.objects.aget(pk=customer.id)
    assert (stored.customer_name, stored.customer_email) == ("Lucy", "lucy@example.com")
    assert (await customer.history())["customer"] == {"name": "Lucy", "email": "lucy@example.com", "verified": False}
