"""Turn the files and pages a company already has into FAQ entries and document chunks.

A company's exports are rarely clean, and one bad row must not cost the other thousand. So every parser here is
forgiving: what it cannot use becomes a `ParseIssue` that says what was wrong and what was done about it, and the
rest still comes through. Nothing here raises for bad content; only a misuse of the API (nonsensical chunk sizes)
raises. Limits come in as arguments: this module knows nothing of Django settings, models or the database.

pypdf, BeautifulSoup, httpx and the LangChain splitters are imported where they are used, so that importing this
module from a view or a task stays cheap.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import html
import io
import json
import logging
import re
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedItem:
    key: str  # FAQ id (or slug+hash of the question), or f"{doc_key}#{chunk_no}" for document chunks
    kind: Literal["faq", "chunk"]
    question: str  # FAQ question, or the document/section title for a chunk
    text: str  # FAQ answer, or the chunk text
    language: str | None = None  # only when the file says so; the caller detects the rest
    url: str = ""  # where a customer can read more
    phrasings: tuple[str, ...] = ()  # other ways customers ask the same FAQ
    translations: tuple[tuple[str, str, str], ...] = ()  # (lang, question, answer), sorted by lang


@dataclass(frozen=True)
class ParseIssue:
    location: str  # "faq.csv line 12", "guide.pdf", "https://host/page"
    message: str  # what is wrong and what was done about it


@dataclass
class ParseResult:
    items: list[ParsedItem] = field(default_factory=list)
    issues: list[ParseIssue] = field(default_factory=list)

    def add_issue(self, location: str, message: str) -> None:
        self.issues.append(ParseIssue(location, message))

    def extend(self, other: ParseResult) -> None:
        self.items.extend(other.items)
        self.issues.extend(other.issues)


Format = Literal["csv", "json", "jsonl", "markdown", "html", "text", "pdf"]

_FORMAT_BY_EXTENSION: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
}
_FORMAT_BY_CONTENT_TYPE: dict[str, Format] = {
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "application/pdf": "pdf",
}
SUPPORTED_EXTENSIONS = tuple(sorted(_FORMAT_BY_EXTENSION))

CRAWLER_USER_AGENT = "support-bot-crawler/0.1"
_MAX_SITEMAPS = 50  # a sitemap index can name thousands; pages are capped by max_pages, sitemaps by this
_MAX_ROBOTS_BYTES = 512 * 1024
_CRAWLABLE_CONTENT_TYPES = {"text/html", "application/xhtml+xml", "application/pdf", "text/plain", "text/markdown"}
_XML_CONTENT_TYPES = {"application/xml", "text/xml"}
# Links to these are never pages; following them would only spend requests on issues.
_SKIPPED_LINK_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .gif .webp .svg .ico .css .js .zip .gz .tar .rar .7z .exe .dmg .mp3 .mp4 .avi .mov .webm "  # noqa: SIM905 -- a word list reads better
    ".woff .woff2 .ttf .doc .docx .xls .xlsx .ppt .pptx".split()
)

_HEADING_LINE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SITEMAP_LOC = re.compile(r"<loc>(.*?)</loc>", re.IGNORECASE | re.DOTALL)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)
_FENCE_LINE = re.compile(r"^\s*(```|~~~)")
_TRANSLATION_COLUMN = re.compile(r"^(question|answer)_([a-z]{2,3}(?:_[a-z]{2})?)$")
_LANGUAGE_NAMES = {
    "spanish": "es",
    "español": "es",
    "espanol": "es",
    "castellano": "es",
    "english": "en",
    "inglés": "en",
    "ingles": "en",
}
_QUESTION_KEYS = ("question", "pregunta")
_ANSWER_KEYS = ("answer", "respuesta")
_ID_KEYS = ("id", "faq_id")
_LANGUAGE_KEYS = ("language", "lang")
_URL_KEYS = ("url", "link")
_ENTRY_LIST_KEYS = ("entries", "faqs", "items", "questions")


# --- entry points ---------------------------------------------------------------------------------------------------


def parse_file(path: Path, *, max_bytes: int, chunk_chars: int = 1000, chunk_overlap: int = 150) -> ParseResult:
    """Parse one uploaded file; a file over `max_bytes` is rejected from its size alone, before any read."""
    location = path.name
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return _failed(
                location, f"the file is {_human_size(size)}, over the {_human_size(max_bytes)} limit; skipped"
            )
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)  # the file may have grown since stat()
    except OSError as error:
        return _failed(location, f"the file could not be read ({error.strerror or error}); skipped")
    if len(data) > max_bytes:
        return _failed(location, f"the file is over the {_human_size(max_bytes)} limit; skipped")
    return parse_bytes(path.name, data, chunk_chars=chunk_chars, chunk_overlap=chunk_overlap)


def parse_bytes(
    name: str,
    data: bytes,
    *,
    chunk_chars: int = 1000,
    chunk_overlap: int = 150,
    url: str = "",
    content_type: str = "",
) -> ParseResult:
    """Parse content whose format is given by the extension of `name`, else by `content_type`."""
    _check_chunking(chunk_chars, chunk_overlap)
    location = name or url or "upload"
    source = _Source(location, _document_key(name, url), url, chunk_chars, chunk_overlap)
    file_format = _detect_format(name, content_type)
    if file_format is None:
        described = PurePosixPath(name).suffix or content_type or "no extension"
        return _failed(location, f"unsupported file type ({described}); use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if not data.removeprefix(codecs.BOM_UTF8).strip():
        return _failed(location, "the file is empty; nothing imported")
    if file_format == "pdf":
        return _with_fallback_issue(_parse_pdf(data, source), location)
    if _looks_binary(data):
        return _failed(location, "the file looks binary (it contains NUL bytes), not text; skipped")
    text, decoding_issue = _decode(data, location)
    if not text.strip():
        return _failed(location, "the file is empty; nothing imported")
    try:
        result = _TEXT_PARSERS[file_format](text, source)
    except Exception as error:  # a parser bug or pathological input must cost this file, not the whole import
        logger.exception("parsing %s failed", location)
        return _failed(location, f"could not be parsed ({type(error).__name__}); skipped")
    if decoding_issue:
        result.issues.insert(0, decoding_issue)
    return _with_fallback_issue(result, location)


def crawl(
    start_url: str,
    *,
    max_pages: int,
    timeout_s: float,
    max_bytes: int,
    chunk_chars: int = 1000,
    chunk_overlap: int = 150,
) -> ParseResult:
    """Read a help site breadth-first from a page or a sitemap, staying on its origin.

    `timeout_s` bounds each URL's whole download, so a server that trickles bytes cannot stall the crawl.
    Each URL that cannot be used becomes an issue and the crawl goes on. robots.txt is honoured when present.
    """
    import httpx

    _check_chunking(chunk_chars, chunk_overlap)
    result = ParseResult()
    start = _normalize_url(start_url, base=start_url)
    if start is None:
        return _failed(start_url, "not an http(s) URL; nothing crawled")
    origin = _origin(start)
    headers = {"User-Agent": CRAWLER_USER_AGENT}
    with httpx.Client(timeout=timeout_s, follow_redirects=True, headers=headers) as client:
        crawler = _Crawler(client, origin, timeout_s, max_bytes, chunk_chars, chunk_overlap, result)
        crawler.run(start, max_pages)
    return result


# --- shared helpers -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where content came from and how its documents are chunked."""

    location: str
    doc_key: str
    url: str
    chunk_chars: int
    chunk_overlap: int


@dataclass(frozen=True)
class _Section:
    title: str
    text: str
    url: str


def _failed(location: str, message: str) -> ParseResult:
    return ParseResult(items=[], issues=[ParseIssue(location, message)])


def _with_fallback_issue(result: ParseResult, location: str) -> ParseResult:
    """A parse that yields nothing must still say so, or the admin sees a silent no-op."""
    if not result.items and not result.issues:
        result.add_issue(location, "no entries or text found; nothing imported")
    return result


def _check_chunking(chunk_chars: int, chunk_overlap: int) -> None:
    if chunk_chars < 1 or not 0 <= chunk_overlap < chunk_chars:
        raise ValueError(
            f"need chunk_chars >= 1 and 0 <= chunk_overlap < chunk_chars, got {chunk_chars}, {chunk_overlap}"
        )


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


def _detect_format(name: str, content_type: str) -> Format | None:
    by_extension = _FORMAT_BY_EXTENSION.get(PurePosixPath(name.lower()).suffix)
    if by_extension:
        return by_extension
    return _FORMAT_BY_CONTENT_TYPE.get(_mime_type(content_type))


def _mime_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _document_key(name: str, url: str) -> str:
    """The stable part of a chunk key: the URL path for pages, the file name for files."""
    if url:
        parts = urlsplit(url)
        key = unquote(parts.path) or "/"
        return f"{key}?{parts.query}" if parts.query else key
    return PurePosixPath(name.replace("\\", "/")).name or name


def _looks_binary(data: bytes) -> bool:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    return b"\x00" in data[:8192]


def _decode(data: bytes, location: str) -> tuple[str, ParseIssue | None]:
    """UTF-8 (with or without BOM) or UTF-16 with BOM silently; anything else is read as Windows-1252 and said so."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), None
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        text = data.decode("cp1252", errors="replace")
        message = (
            f"not valid UTF-8 (first bad byte at offset {error.start}); decoded as Windows-1252 — "
            "check accented characters, and save as UTF-8 next time"
        )
        return text, ParseIssue(location, message)


def _slug(text: str, max_length: int = 48) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:max_length].rstrip("-")


def _question_key(question: str) -> str:
    """A key for an FAQ without an id: readable, and unchanged as long as the question is."""
    normalized = " ".join(question.split()).casefold()
    digest = hashlib.sha1(normalized.encode(), usedforsecurity=False).hexdigest()[:10]
    slug = _slug(question)
    return f"{slug}-{digest}" if slug else f"q-{digest}"


def _humanize_name(name: str) -> str:
    stem = PurePosixPath(name.rstrip("/")).stem or name
    words = re.sub(r"[-_]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else name


# --- FAQ entries ----------------------------------------------------------------------------------------------------


class _FaqCollector:
    """Builds FAQ items from loosely shaped records, keeping the first of each key and reporting the rest."""

    def __init__(self) -> None:
        self.result = ParseResult()
        self._first_seen: dict[str, str] = {}
        self._question_only: list[tuple[ParsedItem, str]] = []

    def finish(self) -> ParseResult:
        """Question-only records are an intent list when no record has an answer; otherwise they are mistakes."""
        if self._question_only and not self.result.items:
            self.result.items.extend(item for item, _ in self._question_only)
        else:
            for _, location in self._question_only:
                self.result.add_issue(location, "missing answer; skipped")
            self.result.issues.sort(key=_line_number)  # stable: reported in file order
        self._question_only = []
        return self.result

    def add(self, record: Mapping[str, object], location: str) -> None:
        normalized = {_normalize_key(key): value for key, value in record.items()}
        item = self._build(normalized, location)
        if item is None:
            return
        if item.key in self._first_seen:
            first = self._first_seen[item.key]
            self.result.add_issue(location, f"duplicate id '{item.key}' (first at {first}); this one skipped")
            return
        self._first_seen[item.key] = location
        if item.text:
            self.result.items.append(item)
        else:
            self._question_only.append((item, location))

    def _build(self, record: Mapping[str, object], location: str) -> ParsedItem | None:
        question = _first_text(record, _QUESTION_KEYS)
        answer = _first_text(record, _ANSWER_KEYS)
        if not question:
            self.result.add_issue(location, f"missing question{' and answer' if not answer else ''}; skipped")
            return None
        entry_id = _first_text(record, _ID_KEYS)
        return ParsedItem(
            key=entry_id or _question_key(question),
            kind="faq",
            question=question,
            text=answer or "",
            language=self._language(record, location),
            url=_first_text(record, _URL_KEYS) or "",
            phrasings=_phrasings(record.get("phrasings")),
            translations=self._translations(record, location),
        )

    def _language(self, record: Mapping[str, object], location: str) -> str | None:
        value = _first_text(record, _LANGUAGE_KEYS)
        if not value:
            return None
        code = _language_code(value)
        if code is None:
            self.result.add_issue(location, f"unknown language '{value}'; left for automatic detection")
        return code

    def _translations(self, record: Mapping[str, object], location: str) -> tuple[tuple[str, str, str], ...]:
        found: dict[str, dict[str, str]] = {}
        for key, value in record.items():
            match = _TRANSLATION_COLUMN.match(key)
            text = _as_text(value)
            if match and text:
                code = _language_code(match.group(2)) or match.group(2)
                found.setdefault(code, {})[match.group(1)] = text
        for code, question, answer in _nested_translations(record.get("translations")):
            found.setdefault(code, {}).update({"question": question, "answer": answer})
        translations = []
        for code, parts in sorted(found.items()):
            if not parts.get("answer"):
                self.result.add_issue(location, f"question_{code} has no answer_{code}; that translation ignored")
                continue
            translations.append((code, parts.get("question", ""), parts["answer"]))
        return tuple(translations)


def _line_number(issue: ParseIssue) -> int:
    match = re.search(r" line (\d+)$", issue.location)
    return int(match.group(1)) if match else 0


def _normalize_key(key: object) -> str:
    return re.sub(r"[\s-]+", "_", str(key).strip().lower())


def _as_text(value: object) -> str | None:
    """Text for strings and numbers (ids are often numbers); None for anything without a sensible text form."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _first_text(record: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        text = _as_text(record.get(key))
        if text:
            return text
    return None


def _language_code(value: str) -> str | None:
    lowered = value.strip().lower()
    if lowered in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[lowered]
    primary = re.split(r"[-_]", lowered, maxsplit=1)[0]
    return primary if re.fullmatch(r"[a-z]{2,3}", primary) else None


def _phrasings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        candidates: list[object] = list(value.split("|"))
    elif isinstance(value, list):
        candidates = value
    else:
        return ()
    texts = (_as_text(candidate) for candidate in candidates)
    return tuple(dict.fromkeys(text for text in texts if text))


def _nested_translations(value: object) -> Iterator[tuple[str, str, str]]:
    """JSON entries may carry {"translations": {"en": {"question", "answer"}}} or a list of {"lang", ...}."""
    if isinstance(value, dict):
        pairs: list[tuple[object, object]] = list(value.items())
    elif isinstance(value, list):
        pairs = [(_first_text(entry, _LANGUAGE_KEYS), entry) for entry in value if isinstance(entry, dict)]
    else:
        return
    for raw_code, entry in pairs:
        if not isinstance(raw_code, str) or not isinstance(entry, dict):
            continue
        code = _language_code(raw_code)
        answer = _first_text(entry, _ANSWER_KEYS)
        if code and answer:
            yield code, _first_text(entry, _QUESTION_KEYS) or "", answer


def _parse_faq_csv(text: str, source: _Source) -> ParseResult:
    collector = _FaqCollector()
    result = collector.result
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    header: list[str] = []
    line_before = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            result.add_issue(f"{source.location} line {line_before + 1}", f"unreadable CSV ({error}); skipped")
            if reader.line_num == line_before:
                break
            line_before = reader.line_num
            continue
        location = f"{source.location} line {line_before + 1}"
        line_before = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if not header:
            header = [_normalize_key(cell) for cell in row]
            if not _has_faq_columns(header):
                found = ", ".join(cell for cell in header if cell) or "nothing"
                message = f"the header needs 'question' and 'answer' columns (found: {found}); nothing imported"
                return _failed(f"{source.location} line 1", message)
            continue
        while len(row) > len(header) and not row[-1].strip():
            row = row[:-1]  # trailing delimiters are harmless
        if len(row) > len(header):
            message = (
                f"{len(row)} fields but the header has {len(header)} (an unquoted delimiter or quote in the text?); "
                "skipped"
            )
            result.add_issue(location, message)
            continue
        collector.add(dict(zip(header, row, strict=False)), location)
    return collector.finish()


def _sniff_delimiter(text: str) -> str:
    """The header names the columns, so whichever of , ; or tab it uses most is the delimiter."""
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _has_faq_columns(header: list[str]) -> bool:
    return any(key in header for key in _QUESTION_KEYS) and any(key in header for key in _ANSWER_KEYS)


def _parse_faq_json(text: str, source: _Source) -> ParseResult:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        if text.count("\n") > 0 and text.lstrip().startswith("{"):
            # One object per line saved as .json: read it as JSON Lines rather than reject all of it.
            result = _parse_faq_jsonl(text, source)
            result.issues.insert(0, ParseIssue(source.location, "not a single JSON document; read as JSON Lines"))
            return result
        return _failed(
            source.location,
            f"invalid JSON at line {error.lineno}, column {error.colno} ({error.msg}); nothing imported",
        )
    entries = _json_entries(document)
    if entries is None:
        keys = ", ".join(f"'{key}'" for key in _ENTRY_LIST_KEYS)
        return _failed(source.location, f"expected a list of entries or an object with {keys}; nothing imported")
    collector = _FaqCollector()
    for number, entry in enumerate(entries, start=1):
        location = f"{source.location} entry {number}"
        if isinstance(entry, dict):
            collector.add(entry, location)
        else:
            collector.result.add_issue(location, "not an object with question and answer; skipped")
    return collector.finish()


def _json_entries(document: object) -> list[object] | None:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for key in _ENTRY_LIST_KEYS:
            if isinstance(document.get(key), list):
                return list(document[key])
        if any(key in document for key in _QUESTION_KEYS):
            return [document]
    return None


def _parse_faq_jsonl(text: str, source: _Source) -> ParseResult:
    collector = _FaqCollector()
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends, which splitlines() would cut at.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        location = f"{source.location} line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            collector.result.add_issue(location, f"invalid JSON at column {error.colno} ({error.msg}); line skipped")
            continue
        if isinstance(entry, dict):
            collector.add(entry, location)
        else:
            collector.result.add_issue(location, "not a JSON object with question and answer; line skipped")
    return collector.finish()


# --- Markdown: an FAQ when its headings are questions, else a document ---------------------------------------------


@dataclass(frozen=True)
class _Heading:
    line_index: int
    level: int
    title: str

    @property
    def is_question(self) -> bool:
        return self.title.endswith("?") or self.title.startswith("¿")


def _markdown_headings(lines: list[str]) -> list[_Heading]:
    headings = []
    in_fence = False
    for index, line in enumerate(lines):
        if _FENCE_LINE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING_LINE.match(line)
        if match:
            headings.append(_Heading(index, len(match.group(1)), match.group(2).strip()))
    return headings


def _parse_markdown(text: str, source: _Source) -> ParseResult:
    lines = text.splitlines()
    headings = _markdown_headings(lines)
    if any(heading.is_question for heading in headings):
        return _parse_faq_markdown(lines, headings, source)
    title = next((heading.title for heading in headings if heading.level == 1), _humanize_name(source.doc_key))
    return _chunk_sections(_markdown_sections(text, title, source.url), source)


def _parse_faq_markdown(lines: list[str], headings: list[_Heading], source: _Source) -> ParseResult:
    collector = _FaqCollector()
    for position, heading in enumerate(headings):
        if not heading.is_question:
            continue
        end = next(
            (
                later.line_index
                for later in headings[position + 1 :]
                if later.is_question or later.level <= heading.level
            ),
            len(lines),
        )
        answer = "\n".join(lines[heading.line_index + 1 : end]).strip()
        record = {"question": heading.title, "answer": answer}
        collector.add(record, f"{source.location} line {heading.line_index + 1}")
    return collector.finish()


# --- documents ------------------------------------------------------------------------------------------------------


def _markdown_sections(markdown: str, title: str, url: str) -> list[_Section]:
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(headers_to_split_on=[("#", "h1"), ("##", "h2"), ("###", "h3")])
    sections = []
    for document in splitter.split_text(markdown):
        metadata = document.metadata
        heading = metadata.get("h3") or metadata.get("h2") or metadata.get("h1") or title
        # The splitter joins a section's lines with Markdown hard breaks ("  \n"); plain newlines read better.
        sections.append(_Section(str(heading), document.page_content.replace("  \n", "\n"), url))
    return sections


def _chunk_sections(sections: list[_Section], source: _Source) -> ParseResult:
    """Split sections into overlapping chunks numbered in document order, so the same content gets the same keys."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=source.chunk_chars, chunk_overlap=source.chunk_overlap)
    items: list[ParsedItem] = []
    for section in sections:
        for piece in splitter.split_text(section.text):
            if piece.strip():
                key = f"{source.doc_key}#{len(items)}"
                items.append(
                    ParsedItem(key=key, kind="chunk", question=section.title, text=piece.strip(), url=section.url)
                )
    return ParseResult(items=items, issues=[])


def _parse_text(text: str, source: _Source) -> ParseResult:
    return _chunk_sections([_Section(_humanize_name(source.doc_key), text, source.url)], source)


@dataclass(frozen=True)
class _HtmlPage:
    title: str
    markdown: str  # main text with h1-h3 as Markdown headings, for the section splitter
    links: list[str]


_STRIPPED_HTML_TAGS = ["script", "style", "nav", "footer", "noscript", "template", "iframe", "svg", "head", "title"]
_BLOCK_HTML_TAGS = [
    "p", "div", "section", "article", "main", "aside", "header", "li", "ul", "ol", "br", "tr", "table", "pre",
    "blockquote", "dd", "dt", "dl", "figure", "figcaption", "address", "hr", "h4", "h5", "h6",
]  # fmt: skip


def _read_html(markup: str) -> _HtmlPage:
    from bs4 import BeautifulSoup, Tag

    soup = BeautifulSoup(markup, "html.parser")
    links = [
        href for anchor in soup.find_all("a") if isinstance(anchor, Tag) and isinstance(href := anchor.get("href"), str)
    ]
    first_h1 = soup.find("h1")
    title_tag = soup.find("title")
    title = ""
    for candidate in (first_h1, title_tag):
        if isinstance(candidate, Tag) and candidate.get_text(strip=True):
            title = candidate.get_text(" ", strip=True)
            break
    for tag in [*soup.find_all(_STRIPPED_HTML_TAGS), *soup.find_all(role="navigation")]:
        tag.decompose()
    for level in (1, 2, 3):
        for heading in soup.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    for block in soup.find_all(_BLOCK_HTML_TAGS):
        block.insert_before("\n")
        block.insert_after("\n")
    return _HtmlPage(title=title, markdown=_tidy_whitespace(soup.get_text()), links=links)


def _tidy_whitespace(text: str) -> str:
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _parse_html(text: str, source: _Source) -> ParseResult:
    return _parse_html_page(_read_html(text), source)


def _parse_html_page(page: _HtmlPage, source: _Source) -> ParseResult:
    title = page.title or _humanize_name(source.doc_key)
    return _chunk_sections(_markdown_sections(page.markdown, title, source.url), source)


def _parse_pdf(data: bytes, source: _Source) -> ParseResult:
    from pypdf import PdfReader

    result = ParseResult()
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")  # many "protected" PDFs only restrict printing and open with an empty password
        pages = list(reader.pages)
        metadata_title = reader.metadata.title if reader.metadata else None
    except Exception as error:  # pypdf raises many unrelated types on broken or locked files
        return _failed(source.location, f"could not be read as a PDF ({type(error).__name__}: {error}); skipped")
    title = metadata_title.strip() if isinstance(metadata_title, str) and metadata_title.strip() else ""
    title = title or _humanize_name(source.doc_key)
    sections = []
    for number, page in enumerate(pages, start=1):
        try:
            page_text = page.extract_text() or ""
        except Exception as error:  # one damaged page must not cost the others
            result.add_issue(f"{source.location} page {number}", f"text could not be extracted ({error}); page skipped")
            continue
        if page_text.strip():
            page_url = f"{source.url}#page={number}" if source.url else ""
            sections.append(_Section(title, page_text, page_url))
    if not sections:
        message = "no extractable text (a scanned document? run it through OCR first); nothing imported"
        return _failed(source.location, message) if not result.issues else result
    result.extend(_chunk_sections(sections, source))
    return result


_TEXT_PARSERS: dict[Format, Callable[[str, _Source], ParseResult]] = {
    "csv": _parse_faq_csv,
    "json": _parse_faq_json,
    "jsonl": _parse_faq_jsonl,
    "markdown": _parse_markdown,
    "html": _parse_html,
    "text": _parse_text,
}


# --- crawling -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Download:
    url: str  # after redirects
    content_type: str  # bare MIME type
    charset: str | None
    body: bytes


def _normalize_url(href: str, *, base: str) -> str | None:
    """An absolute http(s) URL without its fragment, or None for mailto:, javascript: and the like."""
    try:
        parts = urlsplit(urljoin(base, href.strip()))
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path or "/", parts.query, ""))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default_port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _has_skipped_extension(url: str) -> bool:
    return PurePosixPath(urlsplit(url).path.lower()).suffix in _SKIPPED_LINK_EXTENSIONS


def _is_sitemap(body: bytes) -> bool:
    head = body[:2048].lower()
    return b"<urlset" in head or b"<sitemapindex" in head


def _sitemap_locations(body: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs). A regex, not an XML parser: no entity expansion, no parser dependency."""
    text = body.decode("utf-8", errors="replace")
    locations = [html.unescape(_CDATA.sub(r"\1", found)).strip() for found in _SITEMAP_LOC.findall(text)]
    if "<sitemapindex" in text[:2048].lower():
        return [], locations
    return locations, []


def _decode_download(download: _Download, location: str) -> tuple[str, ParseIssue | None]:
    if download.charset:
        try:
            return download.body.decode(download.charset), None
        except (LookupError, UnicodeDecodeError):
            pass
    return _decode(download.body, location)


class _Crawler:
    """One breadth-first crawl of one origin; collects items and issues into `result`."""

    def __init__(
        self,
        client: httpx.Client,
        origin: tuple[str, str, int | None],
        timeout_s: float,
        max_bytes: int,
        chunk_chars: int,
        chunk_overlap: int,
        result: ParseResult,
    ) -> None:
        self.client = client
        self.origin = origin
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.chunk_chars = chunk_chars
        self.chunk_overlap = chunk_overlap
        self.result = result
        self.queue: deque[str] = deque()
        self.seen: set[str] = set()
        self.sitemaps_read = 0
        self.robots: RobotFileParser | None = None

    def run(self, start: str, max_pages: int) -> None:
        self.robots = self._read_robots()
        self._enqueue(start)
        pages = 0
        while self.queue:
            url = self.queue.popleft()
            if self.robots and not self.robots.can_fetch(CRAWLER_USER_AGENT, url):
                self.result.add_issue(url, "disallowed by the site's robots.txt; skipped")
                continue
            if pages >= max_pages:
                left = len(self.queue) + 1
                self.result.add_issue(url, f"stopped after {max_pages} pages (the limit); {left} more URLs not read")
                return
            if self._visit(url):
                pages += 1

    def _enqueue(self, url: str) -> None:
        if url not in self.seen and _origin(url) == self.origin and not _has_skipped_extension(url):
            self.seen.add(url)
            self.queue.append(url)

    def _visit(self, url: str) -> bool:
        """Fetch and read one URL; returns whether it counts as a page (sitemaps do not)."""
        download = self._download(url, self.max_bytes)
        if isinstance(download, str):
            self.result.add_issue(url, download)
            return True
        if download.url != url:
            if _origin(download.url) != self.origin:
                self.result.add_issue(url, f"redirects to another site ({download.url}); skipped")
                return True
            if download.url in self.seen:
                return False  # a redirect to a page already queued or read
            self.seen.add(download.url)
        if _is_sitemap(download.body):
            self._read_sitemap(download)
            return False
        if download.content_type in _XML_CONTENT_TYPES:
            self.result.add_issue(url, "XML that is not a sitemap; skipped")
            return True
        try:
            self._read_page(download)
        except Exception as error:  # one pathological page must not end the crawl
            logger.exception("parsing %s failed", download.url)
            self.result.add_issue(url, f"could not be parsed ({type(error).__name__}); skipped")
        return True

    def _read_page(self, download: _Download) -> None:
        source = _Source(
            download.url, _document_key("", download.url), download.url, self.chunk_chars, self.chunk_overlap
        )
        if download.content_type == "application/pdf":
            self.result.extend(_with_fallback_issue(_parse_pdf(download.body, source), download.url))
            return
        text, decoding_issue = _decode_download(download, download.url)
        if decoding_issue:
            self.result.issues.append(decoding_issue)
        if download.content_type in ("text/plain", "text/markdown"):
            parsed = (
                _parse_text(text, source) if download.content_type == "text/plain" else _parse_markdown(text, source)
            )
            self.result.extend(_with_fallback_issue(parsed, download.url))
            return
        page = _read_html(text)
        self.result.extend(_with_fallback_issue(_parse_html_page(page, source), download.url))
        for href in page.links:
            link = _normalize_url(href, base=download.url)
            if link:
                self._enqueue(link)

    def _read_sitemap(self, download: _Download) -> None:
        self.sitemaps_read += 1
        pages, sitemaps = _sitemap_locations(download.body)
        elsewhere = 0
        for location in pages:
            link = _normalize_url(location, base=download.url)
            if link and _origin(link) == self.origin:
                self._enqueue(link)
            else:
                elsewhere += 1
        if elsewhere:
            self.result.add_issue(download.url, f"{elsewhere} URLs on other sites or not http(s); ignored")
        for location in sitemaps:
            link = _normalize_url(location, base=download.url)
            if not link or _origin(link) != self.origin or link in self.seen:
                continue
            self.seen.add(link)
            if self.sitemaps_read >= _MAX_SITEMAPS:
                self.result.add_issue(link, f"more than {_MAX_SITEMAPS} sitemaps; skipped")
                continue
            nested = self._download(link, self.max_bytes)
            if isinstance(nested, str):
                self.result.add_issue(link, nested)
            elif _is_sitemap(nested.body):
                self._read_sitemap(nested)
            else:
                self.result.add_issue(link, "listed as a sitemap but is not one; skipped")

    def _read_robots(self) -> RobotFileParser | None:
        """The site's rules, or None (everything allowed) when it has no readable robots.txt."""
        scheme, host, port = self.origin
        default_port = 443 if scheme == "https" else 80
        netloc = host if port in (None, default_port) else f"{host}:{port}"
        download = self._download(f"{scheme}://{netloc}/robots.txt", _MAX_ROBOTS_BYTES)
        if isinstance(download, str) or download.content_type not in ("text/plain", ""):
            return None
        text, _ = _decode_download(download, download.url)
        rules = RobotFileParser()
        rules.parse(text.splitlines())
        return rules

    def _download(self, url: str, max_bytes: int) -> _Download | str:
        """The response body, or a message saying why it was not used."""
        import httpx

        deadline = time.monotonic() + self.timeout_s
        timed_out = f"timed out after {self.timeout_s:g} s; skipped"
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code >= 400:
                    return f"HTTP {response.status_code} {response.reason_phrase}; skipped".replace("  ", " ")
                content_type = _mime_type(response.headers.get("content-type", ""))
                if content_type and content_type not in _CRAWLABLE_CONTENT_TYPES | _XML_CONTENT_TYPES:
                    return f"not a web page, PDF or sitemap ({content_type}); skipped"
                too_big = f"larger than the {_human_size(max_bytes)} limit; skipped"
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    return too_big
                body = bytearray()
                for piece in response.iter_bytes():
                    body.extend(piece)
                    if len(body) > max_bytes:
                        return too_big
                    if time.monotonic() > deadline:
                        return timed_out
                return _Download(str(response.url), content_type, response.charset_encoding, bytes(body))
        except httpx.TimeoutException:
            return timed_out
        except httpx.TooManyRedirects:
            return "too many redirects; skipped"
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            return f"could not be fetched ({type(error).__name__}: {error}); skipped"
