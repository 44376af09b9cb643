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
    "lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "sabados", "domingo", "domingos",
    "festivo", "festivos", "finde", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday", "mondays", "tuesdays", "wednesdays", "thursdays", "fridays", "saturdays", "sundays",
    "weekend", "weekends", "holiday", "holidays",
}  # fmt: skip
# Matched on lower-case text with accents kept: "no sé" is "I don't know", "no se cobra" is not.
_DONT_KNOW_ACCENTED = re.compile(r"\bno\s+(?:lo\s+)?sé\b|\bno\s+lo\s+se\b")
_DONT_KNOW = re.compile(
    r"\b(no\s+tengo\s+(?:esa\s+)?informacion|no\s+puedo\s+ayudar|no\s+dispongo\s+de\s+esa|"
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


_THOUSANDS = re.compile(r"^\d{1,3}(?:([.,])\d{3})(?:\1\d{3})*$")


def _values(raw: str) -> set[float]:
    """What a written number may mean: "9,95" and "9.95" are 9.95; "1.000" is 1000 (or 1.0); "3,9" is never 39."""
    values: set[float] = set()
    if _THOUSANDS.match(raw):
        values.add(float(re.sub(r"[.,]", "", raw)))
    separators = re.findall(r"[.,]", raw)
    if len(separators) <= 1:
        values.add(float(raw.replace(",", ".")))
    elif len(set(separators)) == 2:  # "1.234,56" or "1,234.56": the last one is the decimal point
        decimal = raw[max(raw.rfind(","), raw.rfind(".")) :]
        values.add(float(re.sub(r"[.,]", "", raw[: -len(decimal)]) + "." + decimal[1:]))
    return values


def _numbers(text: str) -> set[float]:
    found: set[float] = set()
    for raw in _NUMBER.findall(text):
        found |= _values(raw)
    return found


def check_answer(answer: str, context: str) -> CheckResult:
    if not answer.strip() or NO_ANSWER in answer:
        return CheckResult(False, ("no answer",))
    folded_answer, folded_context = _fold(answer), _fold(context)
    problems: list[str] = []
    if _DONT_KNOW.search(folded_answer) or _DONT_KNOW_ACCENTED.search(answer.lower()):
        problems.append("says it does not know")
    context_urls = {url.rstrip(".,;") for url in _URL.findall(context)}
    for url in _URL.findall(answer):
        if url.rstrip(".,;") not in context_urls:
            problems.append(f"URL not in context: {url}")
    answer_without_urls = _CITATION.sub(" ", _URL.sub(" ", answer))
    context_numbers = _numbers(_URL.sub(" ", context))
    for raw in _NUMBER.findall(answer_without_urls):
        if not (_values(raw) & context_numbers):
            problems.append(f"number not in context: {raw}")
    words = set(re.findall(r"[a-z]+", folded_answer))
    for day in sorted(words & _DAYS):
        if day not in folded_context:
            problems.append(f"day not in context: {day}")
    return CheckResult(not problems, tuple(problems))
