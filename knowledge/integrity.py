"""Checks that keep hostile or careless knowledge from being answered before a person has looked at it.

An ingested entry is held for review (``Entry.Status.HELD``, never answerable or indexed) when it:

- addresses the assistant or the model ("ignore previous instructions", "olvida tus instrucciones",
  role tags such as ``<|system|>``): such text would be served verbatim to customers, or read by the model;
- contains HTML markup or event handlers: answers are plain text, so markup is either an attack or a broken export;
- links to anything but http(s)/mailto (``javascript:``, ``data:``, ``file:`` in its text, or any other scheme in
  its url field);
- reuses an FAQ id that another source of the same knowledge base already owns;
- nearly repeats an answerable question of another source while the figures of its answer (prices, days, hours,
  percentages, phone numbers) differ: two official answers that contradict each other.

The text rules are plain functions of the entry's text; the two rules that compare with the rest of the knowledge
base live in ``Reviewer``, built once per sync.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

if TYPE_CHECKING:
    from knowledge.embeddings import TextEncoder
    from knowledge.models import Entry, KnowledgeBase, Source

# Plain cosine (multilingual-e5, query role on both sides) from which two questions count as the same question.
# Measured on pairs written for this: rewordings of one question scored 0.970-0.997 ("¿Cuánto vale el envío?" /
# "¿Cuánto cuesta el envío?" 0.970, "What is the price of shipping?" / "How much does shipping cost?" 0.981), while
# different questions that share most words stayed at or below 0.951 ("tarda" / "cuesta el envío" 0.947, "cancel" /
# "pause my subscription" 0.943, "… open on weekends?" 0.951). A near miss costs ops one click; a missed
# contradiction is served to customers, so the line sits below the rewordings rather than above the near misses.
SAME_QUESTION_SIMILARITY = 0.96


class Rule(StrEnum):
    ADDRESSES_ASSISTANT = "addresses_assistant"
    MARKUP = "markup"
    UNSAFE_LINK = "unsafe_link"
    KEY_TAKEN = "key_taken"
    CONTRADICTION = "contradiction"


@dataclass(frozen=True)
class Flag:
    rule: Rule
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": str(self.rule), "message": self.message}


def describe(flags: Iterable[dict[str, Any]]) -> str:
    """The reasons of ``Entry.review_flags``, one sentence, for the sync report and the admin."""
    return "; ".join(str(flag.get("message", flag.get("rule", ""))) for flag in flags)


# --- text rules -------------------------------------------------------------------------------------------------

# Zero-width characters, soft hyphens and bidi controls: invisible, so they only serve to split a keyword.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

_ASSISTANT = r"(?:ai|a\.i\.|assistant|chatbot|bot|model|language model|llm|gpt|chatgpt)"
_ASISTENTE = r"(?:asistente|bot|chatbot|ia|modelo|modelo de lenguaje|inteligencia artificial|llm|gpt|chatgpt)"
_EN_ORDERS = r"(?:instructions?|prompts?|rules|directives|guidelines|guardrails)"
_ES_ORDERS = r"(?:instrucciones|instruccion|indicaciones|ordenes|reglas|directrices|normas)"

# Matched against the text casefolded, accents removed, whitespace runs made single spaces (see ``_plain``).
_ADDRESSING = [
    # English
    re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass)\b(?: (?:all|any|of|the|your|my|these|those|previous|prior|"
        rf"above|earlier|preceding|original|initial|system))+ {_EN_ORDERS}\b"
    ),
    re.compile(r"\b(?:ignore|disregard|forget) (?:everything|all) (?:above|before|previously|you were told)\b"),
    re.compile(
        r"\bas an? (?:ai|a\.i\.|artificial intelligence|(?:large )?language model|llm|ai (?:assistant|model))\b"
    ),
    re.compile(r"\b(?:system|developer) (?:prompt|message|instructions)\b|\bprompt injection\b"),
    re.compile(r"\b(?:developer|dan|god) mode\b"),
    re.compile(
        r"\b(?:from now on|henceforth|starting now),? (?:you are|you're|you will be|act as|respond|answer|reply|"
        r"always|never|you (?:will|must|should|shall) (?:always |never |only )?(?:answer|respond|reply|say|tell|"
        r"recommend|act|pretend|ignore|reveal|output|print|write))\b"
    ),
    re.compile(rf"\b(?:dear|hey|hi|hello|attention|note to(?: the)?|message (?:to|for)(?: the)?),? {_ASSISTANT}\b"),
    re.compile(rf"\bif you(?: are|'re) (?:an? )?{_ASSISTANT}\b"),
    re.compile(
        rf"\b(?:the|an?|this) {_ASSISTANT} (?:must|should|shall|has to|needs to) (?:always |never |only |now )?"
        r"(?:answer|respond|reply|say|tell|recommend|reveal|ignore|act|pretend)\b"
    ),
    re.compile(
        r"\b(?:reveal|print|show|repeat|output) (?:your|the) (?:system prompt|initial prompt|hidden|instructions)"
    ),
    re.compile(r"\bpretend (?:to be|you are|that you)\b|\b(?:act|behave) as if you were\b|\broleplay as\b"),
    re.compile(r"\b(?:do not|don't) (?:tell|mention|reveal)(?: this| it)?(?: to)? the (?:customer|user)s?\b(?!')"),
    # Spanish
    re.compile(
        r"\b(?:ignora|ignore|ignorad|olvida|olvide|olvidad|omite|omita|descarta|haz caso omiso (?:a|de)|no sigas) "
        rf"(?:todas )?(?:tus|sus|tu|su) {_ES_ORDERS}\b"
    ),
    re.compile(
        r"\b(?:ignora|ignore|ignorad|olvida|olvide|olvidad|omite|omita|descarta|haz caso omiso (?:a|de)|no sigas) "
        rf"(?:todas |cualquier )?(?:las |los )?{_ES_ORDERS} (?:anteriores|previas|originales|iniciales|"
        r"del sistema|de antes|que te (?:dieron|han dado))\b"
    ),
    re.compile(r"\b(?:ignora|olvida|olvide|olvidad) (?:todo )?lo (?:anterior|que te (?:dijeron|han dicho))\b"),
    re.compile(r"\bcomo (?:una |un )?(?:ia|inteligencia artificial|modelo de (?:lenguaje|ia)|llm)\b"),
    re.compile(r"\b(?:prompt|indicaciones|instrucciones) (?:del|de) sistema\b(?! operativo)"),
    re.compile(r"\bmodo (?:desarrollador|dan|dios|sin restricciones)\b"),
    re.compile(rf"\b{_ASISTENTE},? (?:a partir de ahora|desde ahora|de ahora en adelante)\b"),
    re.compile(
        r"\b(?:a partir de ahora|desde ahora|de ahora en adelante),? (?:tu )?(?:eres|seras|actuaras|actua|"
        r"responde|responderas|contesta|contestaras|diras|di|ignora|olvida|finge|debes (?:responder|decir|"
        r"contestar|actuar|ignorar|recomendar|revelar))\b"
    ),
    re.compile(
        rf"\b(?:querido|querida|hola|estimado|estimada|atencion|nota para(?: el| la)?|mensaje para(?: el| la)?),? "
        rf"{_ASISTENTE}\b"
    ),
    re.compile(rf"\bsi eres (?:una |un )?{_ASISTENTE}\b"),
    re.compile(
        rf"\b(?:el|la|este|esta) {_ASISTENTE} (?:debe|debera|tiene que|ha de) (?:siempre |nunca |solo )?"
        r"(?:responder|decir|contestar|ignorar|recomendar|revelar|actuar|fingir)\b"
    ),
    re.compile(r"\b(?:revela|repite|muestra|imprime) (?:tu|tus) (?:prompt|instrucciones|indicaciones)\b"),
    re.compile(r"\bfinge (?:ser|que eres)\b|\bactua como si fueras\b|\bhaz como si fueras\b"),
    re.compile(r"\bno (?:se lo |le )?(?:digas|menciones|reveles)(?: esto)? al (?:cliente|usuario)\b"),
    # Chat-template role markers, in any language
    re.compile(r"<\|\s*[a-z_]+\s*\|>|\[/?inst\]|<</?sys>>|\b(?:im_start|im_end|endoftext)\b"),
    re.compile(
        r"#{2,}\s*(?:instruction|instructions|system|response|input|user|assistant|instruccion|instrucciones)\b"
    ),
]

_HTML_ELEMENTS = (
    "a|abbr|address|area|article|aside|audio|b|base|bdi|bdo|blockquote|body|br|button|canvas|caption|center|cite|"
    "code|col|colgroup|dd|del|details|dfn|dialog|div|dl|dt|em|embed|fieldset|figcaption|figure|font|footer|form|"
    "frame|frameset|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|kbd|legend|li|link|main|mark|marquee|math|"
    "meta|meter|nav|noscript|object|ol|optgroup|option|p|param|picture|pre|progress|q|s|samp|script|section|small|"
    "span|strike|strong|style|sub|summary|sup|svg|table|tbody|td|textarea|tfoot|th|thead|tr|track|tt|u|ul|video|wbr"
)

# Matched against the text with HTML entities decoded, so "&lt;script&gt;" counts as "<script>".
_MARKUP = [
    # An HTML element by name, or any tag with an attribute; placeholders such as "<order-id>" are left alone.
    re.compile(rf"</?(?:{_HTML_ELEMENTS})(?:\s[^<>]*)?/?>", re.IGNORECASE),
    re.compile(r"<[a-z][a-z0-9:-]*\s+[a-z][a-z0-9:-]*\s*=[^<>]*>", re.IGNORECASE),
    re.compile(
        r"<(?:script|iframe|object|embed|svg|img|style|link|meta|form|base|frame|frameset|math|video|audio|input)\b",
        re.IGNORECASE,
    ),
    re.compile(r"<!--|<!\[cdata\[|<!doctype", re.IGNORECASE),
    re.compile(
        r"\bon(?:abort|after\w*|animation\w*|auxclick|before\w*|blur|cancel|change|click|close|contextmenu|copy|cut|"
        r"dblclick|drag\w*|drop|error|focus\w*|hashchange|input|invalid|key\w+|load\w*|message|mouse\w+|offline|"
        r"online|page\w+|paste|pause|play\w*|pointer\w+|popstate|progress|reset|resize|scroll|search|select\w*|show|"
        r"submit|toggle|touch\w+|transition\w+|unload|wheel)\s*=",
        re.IGNORECASE,
    ),
    re.compile(r"\bstyle\s*=\s*[\"']", re.IGNORECASE),
]

_SCRIPT_SCHEME = re.compile(r"(?<![\w-])(?:javascript|vbscript|livescript)\s*:(?!\s)", re.IGNORECASE)
_QUOTED_SCHEME = re.compile(r"[(\"'=]\s*(?:javascript|vbscript|livescript|data|file)\s*:", re.IGNORECASE)
_DATA_URI = re.compile(r"(?<![\w-])data:(?:[a-z]+/[a-z0-9.+-]+)?(?:;[a-z0-9=.-]+)*,", re.IGNORECASE)
_FILE_URI = re.compile(r"(?<![\w-])file:/", re.IGNORECASE)
_ANY_URI = re.compile(r"(?<![\w.+-])([a-z][a-z0-9+.-]{1,30})://", re.IGNORECASE)
_LINK_SCHEMES = {"http", "https", "mailto"}


def _plain(text: str) -> str:
    """Casefolded, without accents, invisible characters or repeated whitespace: what the phrase rules read."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", text.casefold())


def _decoded(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", html.unescape(text)))


def _excerpt(text: str, match: re.Match[str]) -> str:
    found = " ".join(match.group(0).split())
    return found if len(found) <= 60 else found[:57] + "…"


def addressing(text: str) -> str | None:
    """The words with which ``text`` addresses the assistant or the model, if it does."""
    plain = _plain(text)
    for pattern in _ADDRESSING:
        if match := pattern.search(plain):
            return _excerpt(plain, match)
    return None


def markup(text: str) -> str | None:
    """The first HTML tag, comment or event-handler attribute in ``text``, if any."""
    decoded = _decoded(text)
    for pattern in _MARKUP:
        if match := pattern.search(decoded):
            return _excerpt(decoded, match)
    return None


def unsafe_link(text: str) -> str | None:
    """The first link in ``text`` to something other than http(s)/mailto that a browser could follow."""
    decoded = _decoded(text)
    for pattern in (_SCRIPT_SCHEME, _QUOTED_SCHEME, _DATA_URI, _FILE_URI):
        if match := pattern.search(decoded):
            return _excerpt(decoded, match)
    for match in _ANY_URI.finditer(decoded):
        if match.group(1).lower() not in _LINK_SCHEMES:
            return _excerpt(decoded, match)
    return None


def url_is_safe(url: str) -> bool:
    """Whether ``url`` (an entry's link field) is an absolute http(s) or a mailto link."""
    # Browsers drop control characters and whitespace inside a URL, so "java\tscript:" is javascript:.
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", _INVISIBLE.sub("", url))
    if not cleaned:
        return True
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "mailto":
        return bool(parts.path)
    return scheme in ("http", "https") and bool(parts.hostname)


def _texts(entry: Entry) -> list[tuple[str, str]]:
    """(what it is, text) for every text of the entry a customer or the model may read."""
    texts = [("question", entry.question), ("answer", entry.answer)]
    texts += [(f"phrasing {n + 1}", str(p)) for n, p in enumerate(entry.phrasings or [])]
    for lang, version in sorted((entry.translations or {}).items()):
        if isinstance(version, dict):
            texts += [(f"{part} ({lang})", str(version.get(part) or "")) for part in ("question", "answer")]
    return [(name, text) for name, text in texts if text]


def text_flags(entry: Entry) -> list[Flag]:
    """The rules that read the entry alone: addressing the assistant, markup, links."""
    flags: list[Flag] = []
    checks = (
        (Rule.ADDRESSES_ASSISTANT, addressing, "addresses the assistant"),
        (Rule.MARKUP, markup, "contains HTML markup"),
        (Rule.UNSAFE_LINK, unsafe_link, "links to something other than http(s) or mailto"),
    )
    for rule, check, what in checks:
        for name, text in _texts(entry):
            if found := check(text):
                flags.append(Flag(rule, f"the {name} {what}: “{found}”"))
                break
    if entry.url and not url_is_safe(entry.url):
        flags.append(Flag(Rule.UNSAFE_LINK, f"the url is not an http(s) or mailto link: “{entry.url[:60]}”"))
    return flags


# --- numbers, for contradictions --------------------------------------------------------------------------------

# A run of digits, with the separators of decimals, thousands, times, ranges and phone numbers inside it.
_NUMBER_RUN = re.compile(r"\+?\d(?:[\d.,:/()-]|\s(?=[\d(]))*\d|\d")
_THOUSANDS = re.compile(r"^\d{1,3}(?:([.,])\d{3})(?:\1\d{3})*$")


def _canonical_number(run: str) -> str:
    digits = re.sub(r"\D", "", run)
    if len(digits) >= 7 and (run.startswith("+") or re.search(r"[\s()-]", run)):
        return f"tel:{digits}"
    if _THOUSANDS.match(run):
        return digits.lstrip("0") or "0"  # "1.000" (es) and "1,000" (en) are both a thousand
    number = run.replace(",", ".")
    number = re.sub(r":00$", "", number)  # "9:00" is "9"
    if re.fullmatch(r"\d+\.\d+", number):
        number = number.rstrip("0").rstrip(".")  # "4,50" is "4.5"
    return number.lstrip("0") or "0"


def numbers(text: str) -> frozenset[str]:
    """The figures of ``text``, written one way: "4,95 €" and "4.95 euros" give the same, as do "+34 900 123 456"."""
    return frozenset(_canonical_number(match.group(0)) for match in _NUMBER_RUN.finditer(text))


def same_question(a: str, b: str) -> bool:
    """Equal once case, accents, punctuation and spacing are set aside."""
    return _question_words(a) == _question_words(b)


def _question_words(text: str) -> str:
    return " ".join(re.findall(r"\w+", _plain(text)))


# --- rules against the rest of the knowledge base ---------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    entry_id: int
    where: str  # "faq.jsonl entry ship"
    question: str
    answer: str
    words: str  # the question as ``same_question`` compares it


def _versions(entry: Entry) -> list[tuple[str, str]]:
    """(question, answer) in each language of a FAQ entry."""
    versions = [(entry.question, entry.answer)]
    for version in (entry.translations or {}).values():
        if isinstance(version, dict) and version.get("question") and version.get("answer"):
            versions.append((str(version["question"]), str(version["answer"])))
    return [(q, a) for q, a in versions if q.strip()]


def _versions_of(entry: Entry) -> list[_Version]:
    where = f"{entry.source.name} entry {entry.key}"
    return [_Version(entry.pk, where, q, a, _question_words(q)) for q, a in _versions(entry)]


@dataclass(frozen=True)
class Review:
    flags: list[Flag]
    duplicate_of: int | None = None  # the entry a contradicting entry nearly repeats
    similarity: float | None = None

    def as_json(self) -> list[dict[str, str]]:
        return [flag.as_dict() for flag in self.flags]


class Reviewer:
    """Reviews the entries of one source's sync against what the other sources of its knowledge base hold.

    Built once per sync: it reads the FAQ ids and the answerable FAQ entries of the other sources once and embeds
    all the questions in one batch (the vector cache makes a re-sync nearly free, and indexing reuses the vectors).
    Entries of one source are not compared with each other: the clash the rules look for is a second source
    overriding the first (measured: comparing within a file held a correct entry of the vuelalto set, whose
    "My flight has been cancelled…" and "Can I cancel my flight…" score 0.97).
    """

    def __init__(self, kb: KnowledgeBase, source: Source, encoder: TextEncoder | None = None) -> None:
        from knowledge.models import Entry

        self._encoder = encoder
        self._vectors: dict[str, np.ndarray] = {}
        self._key_owners: dict[str, tuple[int, str]] = {}
        others = Entry.objects.filter(knowledge_base=kb, kind=Entry.Kind.FAQ).exclude(source=source)
        for key, pk, source_name in others.order_by("pk").values_list("key", "pk", "source__name"):
            self._key_owners.setdefault(key, (pk, source_name))
        self._versions = [v for entry in others.answerable().select_related("source") for v in _versions_of(entry)]
        self._matrix: np.ndarray | None = None

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            from knowledge.embeddings import get_encoder

            self._encoder = get_encoder()
        return self._encoder

    def prepare(self, questions: Iterable[str]) -> None:
        """Embed, in one batch, the questions of the knowledge base and those about to be reviewed."""
        if not self._versions:
            return  # nothing to compare with
        texts = {v.question for v in self._versions} | {q for q in questions if q.strip()}
        missing = sorted(texts - self._vectors.keys())
        if len(missing) == 1:
            missing.append(" ")  # the encoder caches batches only
        if missing:
            self._vectors.update(zip(missing, self.encoder.embed(missing, is_query=True), strict=True))

    def review(self, entry: Entry) -> Review:
        """Every reason to hold ``entry`` (its fields already set, saved or not); no flags when it may be answered."""
        flags = text_flags(entry)
        if entry.kind != entry.Kind.FAQ:
            return Review(flags)
        owner = self._key_owners.get(entry.key)
        if owner is not None and (entry.pk is None or owner[0] < entry.pk):
            flags.append(Flag(Rule.KEY_TAKEN, f"the id “{entry.key}” already belongs to an entry of {owner[1]}"))
        contradiction = self._contradiction(entry)
        if contradiction is None:
            return Review(flags)
        version, similarity, ours, theirs = contradiction
        message = (
            f"asks the same as “{version.question[:80]}” ({version.where}, similarity {similarity:.2f}) "
            f"but its figures differ: {_figures(ours)} here, {_figures(theirs)} there"
        )
        return Review([*flags, Flag(Rule.CONTRADICTION, message)], version.entry_id, round(similarity, 4))

    def _contradiction(self, entry: Entry) -> tuple[_Version, float, frozenset[str], frozenset[str]] | None:
        """The answerable version that asks what ``entry`` asks, with other figures in its answer (the closest)."""
        if not self._versions:
            return None
        if self._matrix is None:
            self._matrix = np.stack([self._vector(v.question) for v in self._versions])
        best: tuple[_Version, float, frozenset[str], frozenset[str]] | None = None
        for question, answer in _versions(entry):
            similarities = self._matrix @ self._vector(question)
            words = _question_words(question)
            for version, similarity in zip(self._versions, similarities.tolist(), strict=True):
                if similarity < SAME_QUESTION_SIMILARITY and version.words != words:
                    continue
                if numbers(question) != numbers(version.question):
                    continue  # "after 30 days?" and "after 60 days?" are two questions
                ours, theirs = numbers(answer), numbers(version.answer)
                if ours != theirs and (best is None or similarity > best[1]):
                    best = (version, similarity, ours, theirs)
        return best

    def _vector(self, text: str) -> np.ndarray:
        if text not in self._vectors:
            self._vectors[text] = self.encoder.embed([text], is_query=True)[0]
        return self._vectors[text]


def _figures(found: frozenset[str]) -> str:
    return ", ".join(sorted(f.removeprefix("tel:") for f in found)) or "none"
