"""Personal data and credentials out of text before it enters turn logs, exports and training data.

Each kind is replaced by a placeholder (``[EMAIL]``, ``[PHONE]``, ...), so a redacted question still reads
like a question and still trains the router. Three ways of knowing, from strongest to weakest:

- **a checksum or a numbering plan** decides where a digit run could be something innocent: Luhn for card
  numbers, mod-97 for IBANs, the control letter for DNI/NIE, libphonenumber's numbering plans (Spain first,
  then the UK and the US) for phone numbers. An order number that fails them stays.
- **a cue word** in Spanish or English finds what has no shape of its own: credentials ("la contraseña es …",
  "el PIN 4821", "verification code 123456"), card codes ("CVV 123"), dates of birth ("nací el …"), the
  customer's own name ("Soy Ana Pérez", "my name is …"), cued postcodes ("CP 28013") and other national ids.
  A cue also wins over a failed checksum (privacy first: a typo in a DNI letter is still the customer's DNI).
- **a reference cue** ("pedido", "order #", "tracking", "invoice", ...) right before a number keeps it: order,
  booking and tracking numbers are what support is about and must survive.

Credentials are the reason this module exists: whatever a customer calls a password, PIN, one-time code or
card code is removed, never kept in a log. Spans are found on the original text and the earlier kind in
``DETECTORS`` wins an overlap, so ``find_personal_data`` also serves the benchmark (span-level scores).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from phonenumbers import Leniency, PhoneNumberType
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.es import postal_code as es_postal_code
from stdnum.gb import nhs
from stdnum.us import ssn

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
CVV = "[CVV]"
IBAN = "[IBAN]"
DNI = "[DNI]"
NIE = "[NIE]"
ID = "[ID]"
DOB = "[DOB]"
POSTCODE = "[POSTCODE]"
ADDRESS = "[ADDRESS]"
NAME = "[NAME]"
SECRET = "[SECRET]"  # noqa: S105 -- the placeholder that replaces a credential, not one

PHONE_REGIONS = ("ES", "GB", "US")
"""Where a number written without a country code is looked up, in this order (a Spanish shop first)."""

_COMPANY_LINES = {PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST}
"""Number types that are a business's line, not a person's ("Llamé al 900 123 456")."""


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    """The placeholder's name without brackets: ``"PHONE"`` for ``[PHONE]``."""

    @property
    def placeholder(self) -> str:
        return f"[{self.kind}]"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- shared pieces --------------------------------------------------------------------------------------
_REFERENCE_CUE = re.compile(
    r"(?:pedido|order|orden|ref|refer[ei]nc[ei]a?|booking|reserva|localizador|tracking|seguimiento|env[íi]o|"
    r"shipment|parcel|paquete|factura|invoice|albar[áa]n|ticket|incidencia|case|caso|modelo?|vuelo|flight|"
    r"sku|serial|serie|product(?:o)?|art[íi]culo|item|cup[óo]n|coupon|promo|descuento|discount)"
    r"\W{0,3}(?:n[º°o.]*\s*|no\.?\s*|number\s*|n[úu]mero\s*|code\s*|c[óo]digo\s*)?(?:is|es|was|era)?\s*[#:]?\s*$",
    re.IGNORECASE,
)
"""Text that ends right before a number when the number is an order, booking, tracking or product reference."""


def _after_reference(text: str, start: int) -> bool:
    return bool(_REFERENCE_CUE.search(text[max(0, start - 40) : start]))


def _cued(text: str, start: int, cue: re.Pattern[str], window: int = 40) -> bool:
    return bool(cue.search(text[max(0, start - window) : start]))


_CONNECTOR = (
    r"(?:[:=]|-+>?|[–—]|\b(?:es|era|ser[áa]|ser[íi]a|son|fue|is|was|are|will\s+be|would\s+be|is\s+now|ahora\s+es|"
    r"pone|says|reads)\b)"
)
_FILLER_WORD = r"(?!(?:no|not|nunca|never|ni|nor|ya|isn't|wasn't|doesn't|don't)\b)[\w'’.-]+"


def _after_cue(
    cue: str, value: str, *, filler: int = 5, direct: str | None = "", loose: bool = False
) -> re.Pattern[str]:
    """``cue`` [a few words] connector ``value``; or ``cue`` ``value`` right away where ``direct`` (a lookahead
    condition, "" for none) allows it, None where it does not; with ``loose``, also ``cue`` [up to three words]
    and a value of four or more characters with a digit ("contraseña actual Hola123", "el PIN de la tarjeta 1234")."""
    punctuation = r"[\s:.…?¿-]*"
    linked = rf"(?:\s+{_FILLER_WORD}){{0,{filler}}}?\s*,?\s*{_CONNECTOR}{punctuation}(?:el\s+|la\s+|the\s+)?"
    right_after = rf"|{punctuation}#?\s*(?={direct})" if direct is not None else ""
    nearby = rf"|(?:\s+{_FILLER_WORD}){{1,3}}?\s+(?=[^\s]*\d)(?=[^\s]{{4}})" if loose else ""
    return re.compile(rf"{cue}(?:{linked}{right_after}{nearby}){value}", re.IGNORECASE)


# --- e-mail, IBAN, cards ---------------------------------------------------------------------------------
_EMAIL = re.compile(r"[\w.+-]+(?:@|\s?\((?:at|arroba)\)\s?|\s?\[(?:at|arroba)\]\s?)[\w-]+(?:\.[\w-]+)+")
_IBAN_SHAPE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b", re.IGNORECASE)
_CARD_SHAPE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")


def luhn_valid(digits: str) -> bool:
    return digits.isdigit() and luhn.is_valid(digits)


def iban_valid(candidate: str) -> bool:
    """Mod-97 and length (a customer's mistyped national check digits still make it their account)."""
    return stdnum_iban.is_valid(candidate, check_country=False)


def dni_letter_valid(candidate: str) -> bool:
    """The DNI/NIE control letter matches (used by tests and by callers that want the strict check)."""
    compact = re.sub(r"[\s.-]", "", candidate).upper()
    module = es_nie if compact[:1] in ("X", "Y", "Z") else es_dni
    return module.is_valid(compact)


def _emails(text: str) -> Iterator[Span]:
    for match in _EMAIL.finditer(text):
        yield Span(match.start(), match.end(), "EMAIL")


def _ibans(text: str) -> Iterator[Span]:
    """The longest prefix with a valid checksum is the IBAN (the pattern may run into a following word)."""
    for match in _IBAN_SHAPE.finditer(text):
        found = match.group(0)
        for end in range(len(found), 14, -1):
            if found[end - 1] != " " and (end == len(found) or found[end] == " ") and iban_valid(found[:end]):
                yield Span(match.start(), match.start() + end, "IBAN")
                break


def _cards(text: str) -> Iterator[Span]:
    """13–19 digits that pass Luhn and start like a card network (2–6), unless they follow a reference cue."""
    for match in _CARD_SHAPE.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        if digits[0] in "23456" and luhn_valid(digits) and not _after_reference(text, match.start()):
            yield Span(match.start(), match.end(), "CARD")


# --- card codes and credentials --------------------------------------------------------------------------
_CVV = _after_cue(
    r"(?:\b(?:cvv2?|cvc2?|cid|csc)\b|c[óo]digo\s+de\s+seguridad\s+de\s+(?:la|mi|tu)\s+tarjeta|"
    r"card\s+security\s+code|security\s+code\s+(?:on|of)\s+(?:the|my)\s+card|"
    r"(?:\b(?:3|tres|4|cuatro)\s+(?:d[íi]gitos|n[úu]meros|cifras)\s+de\s+(?:atr[áa]s|detr[áa]s|la\s+parte\s+de\s+atr[áa]s))|"
    r"(?:\b(?:3|three|4|four)\s+(?:digits|numbers)\s+on\s+the\s+back))",
    r"(?P<v>\d{3,4})\b",
    filler=4,
)

_CREDENTIAL_CUE = (
    r"\b(?:pass\s?words?|passwd|pwd|pw|passphrase|contrase(?:ñ|n)as?|pass(?=\s*[:=])|"
    r"(?:mi|tu|su|nuestra|nueva)\s+clave|clave\s+(?:de\s+acceso|secreta|de\s+firma|de\s+usuario))\b"
)
_CODE_CUE = (
    r"\b(?:pin|puk|otp|tan|passcode|"
    r"(?:one[- ]time|verification|confirmation|security|access|login|sign[- ]in|authentication|activation|"
    r"unlock|sms|2fa|mfa)\s+(?:pass)?code|"
    r"c[óo]digos?(?:\s+(?:de|del))?\s+(?:verificaci[óo]n|confirmaci[óo]n|seguridad|acceso|autenticaci[óo]n|"
    r"activaci[óo]n|desbloqueo|un\s+solo\s+uso|inicio\s+de\s+sesi[óo]n|sms|otp|2fa)|"
    r"(?:la\s+)?clave|"
    r"c[óo]digo\s+que\s+me\s+(?:\w+\s+){0,2}?(?:llegado|lleg[óo]|enviado|mandado|enviasteis|mandasteis|"
    r"enviaste|mandaste|dado|disteis)|"
    r"code\s+(?:that\s+)?(?:you|u)\s+(?:just\s+)?(?:sent|texted|emailed|gave)|code\s+I\s+(?:got|received))\b"
)
_QUOTED = r"[\"'“«‘](?P<q>[^\s\"'”»’][^\"'”»’\n]{0,63})[\"'”»’]"
_WORD_VALUE = r"(?P<t>[^\s\"'“«‘][^\s]{0,63})"
_DIGIT_VALUE = r"(?P<t>\d{1,3}(?:[ -]\d{1,3}){1,5}(?![\w])|(?=[^\s]*\d)[^\s\"'“«‘][^\s]{0,63})"
"""A code as typed, spaced digits included ("4 4 5 1 2 0", "123 456"), or a token with a digit in it."""
_CREDENTIAL = _after_cue(_CREDENTIAL_CUE, rf"(?:{_QUOTED}|{_WORD_VALUE})", direct=r"[\"'“«‘]|[^\s]*\d", loose=True)
_CODE = _after_cue(_CODE_CUE, rf"(?:{_QUOTED}|{_DIGIT_VALUE})", loose=True)

_NOT_A_SECRET = _words(
    """el la los las lo un una mi tu su que the a an my your his her it its this that same mismo misma igual
    correcta correcto incorrecta incorrecto válida válido valida valido inválida invalida wrong correct incorrect
    valid invalid mala malo bad caducada caducado expired bloqueada bloqueado blocked locked demasiado too muy
    very nueva nuevo new vieja viejo old antigua larga long corta short segura secure weak débil fácil easy
    difícil hard obligatoria required necesaria needed distinta different otra otro other another siempre always
    ahora now todavía still de del en in on for para y and o or qué what cuál which how cómo porque because
    not no ok vale sí yes reset required requerida necessary something algo nothing nada case sensitive"""
)
_TRAILING = ".,;:)]}»”’\"'"


_NEGATED = re.compile(r"\b(?:no|sin|without|any|ning[úu]n|ninguna|not\s+a)\s+$", re.IGNORECASE)
"""Before a cue, says there is no credential ("your account has no password: log in with Google")."""


def _secrets(text: str) -> Iterator[Span]:
    for pattern in (_CREDENTIAL, _CODE):
        for match in pattern.finditer(text):
            if _NEGATED.search(text[max(0, match.start() - 12) : match.start()]):
                continue
            group = "q" if match.group("q") is not None else "t"
            start, end = match.span(group)
            if group == "t":
                value = match.group("t")
                stripped = value.rstrip(_TRAILING)
                if not stripped or stripped.lower() in _NOT_A_SECRET:
                    continue
                end = start + len(stripped)
            yield Span(start, end, "SECRET")


def _cvvs(text: str) -> Iterator[Span]:
    for match in _CVV.finditer(text):
        yield Span(*match.span("v"), "CVV")


# --- national ids ----------------------------------------------------------------------------------------
_DNI_SHAPE = re.compile(r"\b\d{2}\.?\d{3}\.?\d{3}[ -]?[A-Z]\b", re.IGNORECASE)
_NIE_SHAPE = re.compile(r"\b[XYZ][ -]?\d{7}[ -]?[A-Z]\b", re.IGNORECASE)
_ID_CUE = re.compile(
    r"\b(?:dni|d\.n\.i\.?|nif|nie|n\.i\.e\.?|documento|identidad|identificaci[óo]n|residencia|residente|"
    r"id(?:\s+(?:card|number))?|identity|national\s+id|tax\s+id)\b",
    re.IGNORECASE,
)
_NINO = re.compile(r"\b[A-Z]{2}(?:(?P<spaced>\s\d{2}\s\d{2}\s\d{2}\s)|\d{6})[A-D]\b")
_NINO_CUE = re.compile(r"\b(?:national\s+insurance|NI\s+(?:number|no)|NINO)\b", re.IGNORECASE)
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{9}\b")
_SSN_CUE = re.compile(r"\b(?:ssn|social\s+security)\b", re.IGNORECASE)
_NHS = _after_cue(r"\bNHS(?:\s+(?:number|no\.?))?", r"(?P<v>\d{3}\s?\d{3}\s?\d{4})\b")
_PASSPORT = _after_cue(
    r"\b(?:pasaporte|passport)(?:\s+(?:number|no\.?|n[úu]mero))?",
    r"(?P<v>(?=[A-Z]*\d)[A-Z0-9]{6,9})\b",
    filler=3,
)
_SOCIAL_SECURITY_ES = _after_cue(
    r"\b(?:(?:n[úu]mero\s+de\s+(?:la\s+)?)?seguridad\s+social|n[úu]mero\s+de\s+afiliaci[óo]n|nuss|naf)",
    r"(?P<v>\d{2}[ /-]?\d{8}[ /-]?\d{2})\b",
    filler=3,
)


def _spanish_ids(text: str) -> Iterator[Span]:
    """DNI and NIE: a valid control letter, or any letter when a cue says it is an id document."""
    for shape, kind in ((_NIE_SHAPE, "NIE"), (_DNI_SHAPE, "DNI")):
        for match in shape.finditer(text):
            if _after_reference(text, match.start()):
                continue
            if dni_letter_valid(match.group(0)) or _cued(text, match.start(), _ID_CUE):
                yield Span(match.start(), match.end(), kind)


def _other_ids(text: str) -> Iterator[Span]:
    for match in _NINO.finditer(text):
        if match.group("spaced") or _cued(text, match.start(), _NINO_CUE):
            yield Span(match.start(), match.end(), "ID")
    for match in _SSN.finditer(text):
        cued = _cued(text, match.start(), _SSN_CUE)
        if cued or ("-" in match.group(0) and ssn.is_valid(match.group(0))):
            yield Span(match.start(), match.end(), "ID")
    for match in _NHS.finditer(text):
        if nhs.is_valid(match.group("v")):
            yield Span(*match.span("v"), "ID")
    for pattern in (_PASSPORT, _SOCIAL_SECURITY_ES):
        for match in pattern.finditer(text):
            yield Span(*match.span("v"), "ID")


# --- phones ----------------------------------------------------------------------------------------------
_PHONE_CUE = (
    r"(?:\b(?:tel[ée]fono|tel|tlf|tfno|m[óo]vil|fijo|whatsapp|phone|mobile|cell|landline|"
    r"ll[áa]m(?:a|e|ad|en)me|call\s+me|text\s+me|ring\s+me|reach\s+me|contact\s+me)\b|"
    r"\b(?:my|mi)\s+(?:number|n[úu]mero)\b)"
)
_CUED_PHONE = re.compile(
    _PHONE_CUE + r"[^\d+(\n]{0,25}?(?P<v>(?:\+|00)?\(?\d[\d ().-]{7,17}\d)(?![\d])",
    re.IGNORECASE,
)
_PHONE_SHAPE = re.compile(
    r"""(?<![\w+])(?:
        (?:\+1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}          # (555) 123-4567
      | (?:\+1[ .-]?)?\d{3}[.-]\d{3}[.-]\d{4}                # 555-123-4567, 555.123.4567
      | \+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d){6,11}       # anything international: +1 555 123 4567
    )(?!\w)""",
    re.VERBOSE,
)
"""Shapes that are phone numbers even where the numbering plan says unassigned (555 numbers, new ranges)."""


def _phones(text: str) -> Iterator[Span]:
    """Numbers libphonenumber calls valid (grouped as people write them), and any long number after a phone cue."""
    if sum(c.isdigit() for c in text) < 7:
        return
    for region in PHONE_REGIONS:
        for found in phonenumbers.PhoneNumberMatcher(text, region, leniency=Leniency.STRICT_GROUPING):
            if phonenumbers.number_type(found.number) in _COMPANY_LINES or _after_reference(text, found.start):
                continue
            yield Span(found.start, found.end, "PHONE")
    for match in _CUED_PHONE.finditer(text):
        if sum(c.isdigit() for c in match.group("v")) >= 9 and not _company_line(match.group("v")):
            yield Span(*match.span("v"), "PHONE")
    for match in _PHONE_SHAPE.finditer(text):
        if not _after_reference(text, match.start()) and not _company_line(match.group(0)):
            yield Span(match.start(), match.end(), "PHONE")


def _company_line(number: str) -> bool:
    for region in PHONE_REGIONS:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.number_type(parsed) in _COMPANY_LINES
    return False


# --- dates of birth and postcodes ------------------------------------------------------------------------
_MONTHS = (
    r"(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?"
)
_DATE = (
    r"(?P<v>\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}"
    rf"|\d{{1,2}}(?:st|nd|rd|th|º)?\s+(?:de\s+|of\s+)?{_MONTHS}(?:,?\s+(?:de\s+|del\s+)?(?:\d{{4}}|\d{{2}}))?"
    rf"|{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?)\b"
)
_DOB = re.compile(
    r"\b(?:fecha\s+de\s+nacimiento|f\.\s?nac\.?|nac[íi]|naci[óo]|nacimos|nacid[oa]s?|date\s+of\s+birth|"
    r"birth\s?date|d\.?o\.?b\.?|born|cumpleaños|birthday)"
    rf"(?:(?:\s+{_FILLER_WORD}){{0,4}}?\s*(?:{_CONNECTOR}|\b(?:el|on|the|en)\b)?\s*(?:the\s+|el\s+|on\s+)?){_DATE}",
    re.IGNORECASE,
)

_UK_POSTCODE = r"(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)\s?\d[ABD-HJLNP-UW-Z]{2}"
_UK_POSTCODE_SPACED = re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)\s\d[ABD-HJLNP-UW-Z]{2}\b")
_CUED_POSTCODE = _after_cue(
    r"\b(?:c\.\s?p\.?|cp|c[óo]digo\s+postal|postal\s+code|post\s?code|zip(?:\s*code)?)",
    rf"(?P<v>(?-i:{_UK_POSTCODE})|\d{{5}}(?:-\d{{4}})?)\b",
    filler=3,
)
_ES_POSTCODE_CITY = re.compile(r"\b(?P<v>\d{5})(?=\s+[A-ZÁÉÍÓÚÑ][a-záéíóúñ]{2,})")


def _dates_of_birth(text: str) -> Iterator[Span]:
    for match in _DOB.finditer(text):
        yield Span(*match.span("v"), "DOB")


def _postcodes(text: str) -> Iterator[Span]:
    for match in _CUED_POSTCODE.finditer(text):
        yield Span(*match.span("v"), "POSTCODE")
    for match in _UK_POSTCODE_SPACED.finditer(text):
        if not _after_reference(text, match.start()):
            yield Span(match.start(), match.end(), "POSTCODE")
    for match in _ES_POSTCODE_CITY.finditer(text):
        if es_postal_code.is_valid(match.group("v")) and not _after_reference(text, match.start()):
            yield Span(match.start(), match.end(), "POSTCODE")


# --- street addresses ------------------------------------------------------------------------------------
_ES_STREET = (
    r"(?:calle|c/|avenida|avda\.?|av\.|plaza|pza\.?|paseo|p\.º|camino|carretera|ctra\.?|ronda|"
    r"travesía|travesia|glorieta|urbanización|urb\.)"
)
_ES_ADDRESS = re.compile(
    _ES_STREET
    + r"\s+(?:[\wáéíóúñü.]+\s+){0,4}?[\wáéíóúñü.]+,?\s*(?:n\.?º\s*|nº\s*|num\.?\s*|número\s*)?\d{1,4}[A-Z]?\b"
    r"(?:,?\s*\d{1,2}\s*[ºª°](?:\s*(?:[A-Z]\b|\d{1,2}\s*[ºª°]|izq(?:da|uierda)?\b\.?|dcha\b\.?|derecha\b|"
    r"centro\b))?|,?\s*(?:piso|planta|puerta|pta\.?|esc\.?|escalera)\s*\w+)*"
    r"(?:,?\s*\d{5}(?:\s+(?-i:[A-ZÁÉÍÓÚÑ])[\wáéíóúñü]+)?)?",
    re.IGNORECASE,
)
_EN_STREET = (
    r"(?i:street|st\.?|avenue|ave\.?|road|rd\.?|lane|ln\.?|drive|dr\.?|boulevard|blvd\.?|court|ct\.?|way|"
    r"place|pl\.?|square|sq\.?|terrace|close|crescent|gardens|grove|row|hill|park|mews)"
)
_EN_ADDRESS = re.compile(
    r"(?:\b(?i:flat|apartment|apt\.?|unit)\s*\w+,?\s*)?"
    r"\b\d{1,5}[A-Z]?,?\s+(?:[A-Z][a-z]+\s+){1,3}" + _EN_STREET + r"(?![a-z])"
    r"(?:,?\s*(?i:apt\.?|apartment|suite|unit|flat)\s*\w+)?",
)


def _addresses(text: str) -> Iterator[Span]:
    for pattern in (_ES_ADDRESS, _EN_ADDRESS):
        for match in pattern.finditer(text):
            yield Span(match.start(), match.end(), "ADDRESS")


# --- the customer's own name -----------------------------------------------------------------------------
_CAPITALISED = (
    r"[A-ZÁÉÍÓÚÑ](?:['’][A-ZÁÉÍÓÚÑ])?[a-záéíóúñüç]+(?:-[A-ZÁÉÍÓÚÑ][a-záéíóúñüç]+)?(?![\wáéíóúñüç])(?!['’]s\b)"
)
_PARTICLE = r"(?:de\s+la|de\s+los|de\s+las|del|de|y|i|van\s+der|van|von|da|di|le)"
_CAPITALISED_NAME = rf"{_CAPITALISED}(?:\s+(?:{_PARTICLE}\s+)?{_CAPITALISED}){{0,4}}"
_LOWER_WORD = r"[a-záéíóúñüç]{2,}"
_NOT_A_NAME = _words(
    """y e o u and or but pero que de del en con sin para por from with at in on to for of the a an el la los las
    un una soy es is am are was fui tengo tiene quiero quisiera necesito have has want need would could can
    puedo no not ni here aquí ahí there también too also desde since cliente customer client vuestro your
    su sus mi my me le lo its it this esto este esta that ese esa aquel hoy today ayer yesterday mañana
    tomorrow ya already still todavía muy very bien well mal sorry perdón gracias thanks hola hello hi buenas
    buenos please porfa favor nuevo nueva new"""
)
_NOT_A_NAME_CAPITALISED = _words(
    """Spanish English British American French German Italian Portuguese Irish Scottish Welsh Canadian
    Español Española Inglés Inglesa Francés Francesa Alemán Alemana Italiano Italiana Portugués Americano
    Americana Británico Británica Premium Prime Gold Silver Platinum Vip Pro Plus Business Cliente Customer
    Client Sorry Here Back New Not From In On At The An A Lunes Martes Miércoles Jueves Viernes Sábado Domingo
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday Enero Febrero Marzo Abril Mayo Junio Julio Agosto
    Septiembre Octubre Noviembre Diciembre January February March April May June July August September October
    November December Hola Hello Hi Buenas Gracias Thanks Please Por"""
)
_OWN_NAME_CUE = re.compile(
    r"\b(?:me\s+llamo|mi\s+nombre\s+es|mi\s+nombre:|my\s+name\s+is|my\s+name's|my\s+name:|"
    r"(?:full\s+)?name\s*:|nombre(?:\s+completo)?\s*:)\s*",
    re.IGNORECASE,
)
"""Cues after which a customer may type their name in lower case ("me llamo lucía fernández")."""
_STRONG_NAME_CUE = re.compile(
    r"\b(?:(?:a|en)\s+nombre\s+de|(?:under|in)\s+(?:the\s+)?name(?:\s+of)?|le\s+habla|al\s+habla|"
    r"(?:el|la)\s+titular(?:\s+de\s+la\s+(?:cuenta|tarjeta))?\s+es|(?:account|card)\s?holder(?:'s\s+name)?\s+is|"
    r"att?\.?:)\s*",
    re.IGNORECASE,
)
_WEAK_NAME_CUE = re.compile(r"\b(?:soy|i'?m|i’m|i\s+am|this\s+is|habla|aquí|here\s+is)\s+", re.IGNORECASE)
_SIGN_OFF = re.compile(
    r"(?:\b(?:un\s+saludo|saludos(?:\s+cordiales)?|atentamente|cordialmente|gracias|muchas\s+gracias|"
    r"kind\s+regards|best\s+regards|best\s+wishes|regards|best|thanks|thank\s+you|many\s+thanks|cheers|sincerely)"
    r"\s*[,.!]?[ \t]*\n?[ \t]*-?\s*)(?P<v>" + _CAPITALISED_NAME + r")[ \t.!]*$",
    re.IGNORECASE | re.MULTILINE,
)
_NAME_AT = re.compile(_CAPITALISED_NAME)
_LOWER_NAME_AT = re.compile(rf"{_LOWER_WORD}(?:\s+{_LOWER_WORD}){{0,2}}")


def _name_after(text: str, start: int, *, lowercase_too: bool) -> Span | None:
    match = _NAME_AT.match(text, start)
    if match:
        words = match.group(0).split()
        while words and words[0] in _NOT_A_NAME_CAPITALISED:
            return None
        return Span(match.start(), match.end(), "NAME")
    if not lowercase_too:
        return None
    lower = _LOWER_NAME_AT.match(text, start)
    if not lower:
        return None
    words = []
    for word in lower.group(0).split():
        if word in _NOT_A_NAME:
            break
        words.append(word)
    if not words:
        return None
    end = start + len(" ".join(words))
    return Span(start, end, "NAME") if text[start:end] == " ".join(words) else None


def _names(text: str) -> Iterator[Span]:
    for cue, lowercase_too in ((_OWN_NAME_CUE, True), (_STRONG_NAME_CUE, False), (_WEAK_NAME_CUE, False)):
        for match in cue.finditer(text):
            span = _name_after(text, match.end(), lowercase_too=lowercase_too)
            if span is not None:
                yield span
    # A sign-off's "Name" (the capitalised-name regex matches case-insensitively here, so check the case).
    for match in _SIGN_OFF.finditer(text):
        value = match.group("v")
        if value[:1].isupper() and _NAME_AT.fullmatch(value) and value.split()[0] not in _NOT_A_NAME_CAPITALISED:
            yield Span(*match.span("v"), "NAME")


def _known_names(text: str, known: Iterable[str]) -> Iterator[Span]:
    """The customer's name as the conversation knows it, whole or any part ("de", "del" are not the name)."""
    for value in known:
        for part in [value.strip(), *value.split()] if value else []:
            if len(part) >= 3 and part[0].isupper():
                for match in re.finditer(rf"\b{re.escape(part)}\b", text, flags=re.IGNORECASE):
                    yield Span(match.start(), match.end(), "NAME")


# --- putting it together ---------------------------------------------------------------------------------
DETECTORS: tuple[Callable[[str], Iterable[Span]], ...] = (
    _cvvs,
    _secrets,
    _emails,
    _ibans,
    _cards,
    _spanish_ids,
    _other_ids,
    _dates_of_birth,
    _phones,
    _addresses,
    _postcodes,
    _names,
)
"""In order of precedence: where two spans overlap, the earlier detector's span is kept."""


SECRET_KINDS = frozenset({"SECRET", "CVV", "CARD"})
"""Kinds whose value must not survive anywhere in a conversation once the customer has typed it."""


def secrets_in(text: str) -> list[str]:
    """The credential and card values typed in ``text``, for redacting their echoes in the rest of the conversation
    (an agent's "I tried 4821 and it fails too" has no cue of its own)."""
    return [text[s.start : s.end] for s in find_personal_data(text) if s.kind in SECRET_KINDS]


def conversation_redactor(customer_name: str, customer_texts: Iterable[str]) -> Callable[[str], str]:
    """``redact`` for any text of one conversation: the customer's stated name, and every credential or card value
    typed in ``customer_texts`` (their messages), are removed wherever they appear, an agent's echo included."""
    known = [customer_name] if customer_name else []
    secrets = sorted({value for text in customer_texts for value in secrets_in(text)})
    return lambda text: redact(text, known, secrets)


def _known_secrets(text: str, secrets: Iterable[str]) -> Iterator[Span]:
    for value in secrets:
        if len(value) >= 3:
            for match in re.finditer(rf"(?<![\w]){re.escape(value)}(?![\w])", text):
                yield Span(match.start(), match.end(), "SECRET")


def find_personal_data(text: str, known: Iterable[str] = (), secrets: Iterable[str] = ()) -> list[Span]:
    """Non-overlapping spans of personal data in ``text``, in text order; ``known`` are the customer's names and
    ``secrets`` credential values seen elsewhere in the conversation (see ``secrets_in``)."""
    if not text:
        return []
    kept: list[Span] = []
    detected = (detector(text) for detector in DETECTORS)
    # what the text itself shows comes first (a cued CVV stays [CVV]); known secrets fill in their echoes
    for candidates in (*detected, _known_secrets(text, list(secrets)), _known_names(text, list(known))):
        for span in candidates:
            if span.end > span.start and not any(span.start < k.end and k.start < span.end for k in kept):
                kept.append(span)
    return sorted(kept, key=lambda span: span.start)


def redact(text: str, known: Iterable[str] = (), secrets: Iterable[str] = ()) -> str:
    """``text`` without personal data; ``known`` are values to remove wherever they appear (the customer's name),
    ``secrets`` credential values the customer typed elsewhere in the conversation (``secrets_in``)."""
    if not text:
        return text
    parts: list[str] = []
    position = 0
    for span in find_personal_data(text, known, secrets):
        parts += [text[position : span.start], span.placeholder]
        position = span.end
    parts.append(text[position:])
    return "".join(parts)
