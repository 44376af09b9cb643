"""Is a generated answer supported by the entries it drew on?

A generated answer fails the check when it states a number, price, time, day or URL that the cited
context does not contain, or when the model says it has no answer. A failed turn falls back to the
vetted extractive answer (or escalates when there is none). Figures are counted in the turn log.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from chat.prompts import NO_ANSWER

_URL = re.compile(r"https?://[^\s)\]>\"']+", re.IGNORECASE)
_CITATION = re.compile(r"\[\d+\]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_DAYS = {
    "lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo", "festivo", "festivos",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "weekend", "weekends",
}  # fmt: skip
_DONT_KNOW = re.compile(
    r"\b(no\s+(?:lo\s+)?se\b|no\s+tengo\s+(?:esa\s+)?informacion|no\s+puedo\s+ayudar|"
    r"i\s+don'?t\s+know|i\s+do\s+not\s+know|i\s+(?:don'?t|do\s+not)\s+have\s+(?:that\s+)?information|"
    r"i'?m\s+not\s+sure|i\s+cannot\s+help|i\s+can'?t\s+help)"
)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    problems: tuple[str, ...] = ()


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _numbers(text: str) -> set[str]:
    """Numbers with their separators normalised, so "9,95" and "9.95" match, and "1.000" matches "1000"."""
    found = set()
    for raw in _NUMBER.findall(text):
        found.add(raw.replace(",", ".").rstrip("."))
        found.add(raw.replace(".", "").replace(",", ""))
    return found


def check_answer(answer: str, context: str) -> CheckResult:
    if not answer.strip() or NO_ANSWER in answer:
        return CheckResult(False, ("no answer",))
    folded_answer, folded_context = _fold(answer), _fold(context)
    problems: list[str] = []
    if _DONT_KNOW.search(folded_answer):
        problems.append("says it does not know")
    context_urls = {url.rstrip(".,;") for url in _URL.findall(context)}
    for url in _URL.findall(answer):
        if url.rstrip(".,;") not in context_urls:
            problems.append(f"URL not in context: {url}")
    answer_without_urls = _CITATION.sub(" ", _URL.sub(" ", answer))
    context_numbers = _numbers(_URL.sub(" ", context))
    for raw in _NUMBER.findall(answer_without_urls):
        if not ({raw.replace(",", ".").rstrip("."), raw.replace(".", "").replace(",", "")} & context_numbers):
            problems.append(f"number not in context: {raw}")
    words = set(re.findall(r"[a-z]+", folded_answer))
    for day in sorted(words & _DAYS):
        if day not in folded_context:
            problems.append(f"day not in context: {day}")
    return CheckResult(not problems, tuple(problems))
