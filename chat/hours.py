"""Business hours ("mon-fri 09:00-18:00; sat 10:00-14:00"): are agents expected online now?"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.utils import timezone

from chat.texts import DAY_NAMES, text

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PART = re.compile(
    r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$"
)


class BadBusinessHours(ValueError):
    pass


ALWAYS = frozenset({"always", "24/7"})


def _parts(spec: str) -> list[tuple[list[tuple[int, int]], time, time]]:
    """Each ";"-part of a spec: its day spans (first, last weekday; 0 = Monday) and its opening and closing time."""
    parts = []
    for part in filter(None, (p.strip() for p in spec.strip().lower().split(";"))):
        match = _PART.match(part)
        if not match:
            raise BadBusinessHours(f"BUSINESS_HOURS part {part!r} is not like 'mon-fri 09:00-18:00'")
        spans = []
        for days in match["days"].split(","):
            first, _, last = days.partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise BadBusinessHours(f"BUSINESS_HOURS: unknown day in {days!r}")
            spans.append((DAYS.index(first), DAYS.index(last or first)))
        start, end = (time.fromisoformat(match[g].zfill(5)) for g in ("start", "end"))
        parts.append((spans, start, end))
    return parts


@lru_cache(maxsize=8)
def parse(spec: str) -> dict[int, list[tuple[time, time]]]:
    """Weekday (0 = Monday) → open intervals. "always" means 24/7."""
    if spec.strip().lower() in ALWAYS:
        return {day: [(time(0, 0), time(23, 59, 59))] for day in range(7)}
    opening: dict[int, list[tuple[time, time]]] = {}
    for spans, start, end in _parts(spec):
        for first, last in spans:
            for day in range(first, last + 1):
                opening.setdefault(day, []).append((start, end))
    return opening


def describe(language: str, spec: str | None = None) -> str:
    """The hours as a customer reads them, in their language and naming the time zone they are kept in
    ("lunes a viernes, 09:00–18:00, hora de Madrid"). The widget says when the team is back in the customer's
    own time zone; naming this one keeps the two from seeming to disagree."""
    spec = spec if spec is not None else settings.BUSINESS_HOURS
    if spec.strip().lower() in ALWAYS:
        return spec  # never told: the team is always there
    names = DAY_NAMES.get(language, DAY_NAMES["en"])
    parts = []
    for spans, start, end in _parts(spec):
        days = [
            names[first] if first == last else text("hours_days", language, first=names[first], last=names[last])
            for first, last in spans
        ]
        parts.append(f"{', '.join(days)}, {start:%H:%M}–{end:%H:%M}")
    zone = settings.TIME_ZONE.rsplit("/", 1)[-1].replace("_", " ")
    return f"{'; '.join(parts)}, {text('hours_zone', language, zone=zone)}"


def is_open(at: datetime | None = None, spec: str | None = None) -> bool:
    local = timezone.localtime(at or timezone.now())
    intervals = parse(spec if spec is not None else settings.BUSINESS_HOURS).get(local.weekday(), [])
    return any(start <= local.time() <= end for start, end in intervals)


def next_opening(at: datetime | None = None, spec: str | None = None) -> datetime | None:
    """When agents are next expected online after ``at`` (in TIME_ZONE): the start of the next open interval
    within a week, or None when the hours never open."""
    local = timezone.localtime(at or timezone.now())
    opening = parse(spec if spec is not None else settings.BUSINESS_HOURS)
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        starts = sorted(
            timezone.make_aware(datetime.combine(day, start), local.tzinfo)
            for start, _ in opening.get(day.weekday(), [])
        )
        for start in starts:
            if start > local:
                return start
    return None


def availability(at: datetime | None = None) -> dict[str, Any]:
    """For the widget, before the first message: are agents away now, and when are they back (ISO 8601 with
    the offset, so the customer's browser can say it in their own time zone)."""
    if is_open(at):
        return {"away": False, "back_at": None}
    back = next_opening(at)
    return {"away": True, "back_at": back.isoformat() if back else None}
