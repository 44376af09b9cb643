"""Personal data out of text before it enters training data: e-mail, phones, cards, IBAN, DNI/NIE, addresses.

Each kind is replaced by a placeholder (``[EMAIL]``, ``[PHONE]``, ...), so a redacted question still reads
like a question and still trains the router. Checksums decide where a digit run could be something else:
only Luhn-valid card numbers are cards (an order number stays), only mod-97-valid IBANs are IBANs. DNI and
NIE are redacted by shape (privacy first: a customer's typo in the letter is still their DNI).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
IBAN = "[IBAN]"
DNI = "[DNI]"
NIE = "[NIE]"
ADDRESS = "[ADDRESS]"
NAME = "[NAME]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_DNI = re.compile(r"\b\d{8}[ -]?[A-Z]\b", re.IGNORECASE)
_NIE = re.compile(r"\b[XYZ][ -]?\d{7}[ -]?[A-Z]\b", re.IGNORECASE)
_PHONE = re.compile(
    r"""(?<![\w+])(?:
        (?:\+|00)34[ .-]?[6-9]\d{2}(?:[ .-]?\d{2,3}){3}            # +34 612 345 678, 0034 912 34 56 78
      | (?:\+|00)34[ .-]?[6-9]\d{8}                                 # +34612345678
      | [6-9]\d{2}(?:[ .-]?\d{3}){2}                                # 612 345 678, 612345678
      | [6-9]\d{2}(?:[ .-]\d{2}){3}                                 # 612 34 56 78
      | (?:\+1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}                # (555) 123-4567
      | (?:\+1[ .-]?)?\d{3}[.-]\d{3}[.-]\d{4}                       # 555-123-4567, 555.123.4567
      | \+1[ .-]?\d{3}[ .-]?\d{3}[ .-]?\d{4}                        # +1 555 123 4567
      | \+\d{2,3}[ .-]?\d(?:[ .-]?\d){7,12}                         # other international numbers
    )(?![\w])""",
    re.VERBOSE,
)
_ES_STREET = (
    r"(?:calle|c/|avenida|avda\.?|av\.|plaza|pza\.?|paseo|p\.º|camino|carretera|ctra\.?|ronda|"
    r"travesía|travesia|glorieta|urbanización|urb\.)"
)
_ES_ADDRESS = re.compile(
    _ES_STREET
    + r"\s+(?:[\wáéíóúñü.]+\s+){0,4}?[\wáéíóúñü.]+,?\s*(?:n\.?º\s*|nº\s*|num\.?\s*|número\s*)?\d{1,4}[A-Z]?\b"
    r"(?:,?\s*\d{1,2}\s*[ºª°]\s*[A-Z]?\b|,?\s*(?:piso|planta|puerta|pta\.?|esc\.?|escalera)\s*\w+)*"
    r"(?:,?\s*\d{5}(?:\s+(?-i:[A-ZÁÉÍÓÚÑ])[\wáéíóúñü]+)?)?",
    re.IGNORECASE,
)
_EN_STREET = (
    r"(?i:street|st\.?|avenue|ave\.?|road|rd\.?|lane|ln\.?|drive|dr\.?|boulevard|blvd\.?|court|ct\.?|way|"
    r"place|pl\.?|square|sq\.?|terrace)"
)
_EN_ADDRESS = re.compile(
    r"\b\d{1,5}[A-Z]?\s+(?:[A-Z][a-z]+\s+){1,3}" + _EN_STREET + r"(?![a-z])"
    r"(?:,?\s*(?i:apt\.?|apartment|suite|unit|flat)\s*\w+)?",
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = re.sub(r"\s", "", candidate).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def dni_letter_valid(candidate: str) -> bool:
    """The DNI/NIE control letter matches (used by tests and by callers that want the strict check)."""
    compact = re.sub(r"[\s-]", "", candidate).upper()
    compact = compact.replace("X", "0", 1) if compact[0] == "X" else compact
    compact = compact.replace("Y", "1", 1) if compact[0] == "Y" else compact
    compact = compact.replace("Z", "2", 1) if compact[0] == "Z" else compact
    number, letter = compact[:-1], compact[-1]
    return number.isdigit() and "TRWAGMYFPDXBNJZSQVHLCKE"[int(number) % 23] == letter


def _cards(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def _ibans(match: re.Match[str]) -> str:
    """The longest prefix with a valid checksum is the IBAN (the pattern may run into a following word)."""
    found = match.group(0)
    for end in range(len(found), 14, -1):
        if found[end - 1] != " " and (end == len(found) or found[end] == " ") and iban_valid(found[:end]):
            return IBAN + found[end:]
    return found


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` without personal data; ``known`` are values to remove wherever they appear (the customer's name)."""
    if not text:
        return text
    result = _EMAIL.sub(EMAIL, text)
    result = _IBAN.sub(_ibans, result)
    result = _CARD.sub(_cards, result)
    result = _NIE.sub(NIE, result)
    result = _DNI.sub(DNI, result)
    result = _PHONE.sub(PHONE, result)
    result = _ES_ADDRESS.sub(ADDRESS, result)
    result = _EN_ADDRESS.sub(ADDRESS, result)
    for value in known:
        for part in [value.strip(), *value.split()] if value else []:
            if len(part) >= 3 and part[0].isupper():  # "de", "del" in "Juan del Río" are not the name
                result = re.sub(rf"\b{re.escape(part)}\b", NAME, result, flags=re.IGNORECASE)
    return result
