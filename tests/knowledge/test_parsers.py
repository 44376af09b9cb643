"""Parsing what a company already has: every bad input yields a clear issue while the good part still comes through."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pypdf import PdfWriter

from knowledge import parsers
from knowledge.parsers import ParsedItem, ParseResult, crawl, parse_bytes, parse_file

# --- helpers --------------------------------------------------------------------------------------------------------


def messages(result: ParseResult) -> list[str]:
    return [f"{issue.location}: {issue.message}" for issue in result.issues]


def keys(result: ParseResult) -> list[str]:
    return [item.key for item in result.items]


def tiny_pdf(*page_texts: str) -> bytes:
    """A minimal valid PDF, one Helvetica text line per page, written by hand so no PDF library is needed."""
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    page_ids = [4 + 2 * index for index in range(len(page_texts))]
    kids = " ".join(f"{page_id} 0 R" for page_id in page_ids)
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_texts)} >>".encode()
    for page_id, text in zip(page_ids, page_texts, strict=True):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode()
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(pdf)
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref_at = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for number in sorted(objects):
        pdf += b"%010d 00000 n \n" % offsets[number]
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(pdf)


def blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# --- FAQ CSV --------------------------------------------------------------------------------------------------------


def test_csv_faq_reads_every_column() -> None:
    data = (
        "id,question,answer,lang,url,phrasings,question_en,answer_en\n"
        "envio-1,¿Cuánto cuesta el envío?,Es gratis desde 49 €.,es,https://shop.example/envios,"
        "precio envio|gastos de envío,How much is shipping?,Free from 49 €.\n"
    ).encode()

    result = parse_bytes("faq.csv", data)

    assert result.issues == []
    assert result.items == [
        ParsedItem(
            key="envio-1",
            kind="faq",
            question="¿Cuánto cuesta el envío?",
            text="Es gratis desde 49 €.",
            language="es",
            url="https://shop.example/envios",
            phrasings=("precio envio", "gastos de envío"),
            translations=(("en", "How much is shipping?", "Free from 49 €."),),
        )
    ]


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_csv_delimiter_is_sniffed_from_the_header(delimiter: str) -> None:
    rows = [["question", "answer"], ["Where is my order?", "Track it, then ask us; we reply fast."]]
    text = "\n".join(delimiter.join(f'"{cell}"' for cell in row) for row in rows)

    result = parse_bytes("faq.csv", text.encode())

    assert [(item.question, item.text) for item in result.items] == [tuple(rows[1])]
    assert result.issues == []


def test_malformed_csv_rows_are_skipped_with_their_line_numbers_and_the_rest_kept() -> None:
    data = (
        b"question,answer\n"
        b"How do I pay?,By card.\n"
        b",An answer without a question\n"  # line 3
        b"A question without an answer?,\n"  # line 4
        b'"Multi-line?","First line\nsecond line"\n'  # lines 5-6
        b"Too, many, fields?,yes\n"  # line 7
        b"Can I return it?,Within 30 days.\n"
    )

    result = parse_bytes("faq.csv", data)

    assert [item.question for item in result.items] == ["How do I pay?", "Multi-line?", "Can I return it?"]
    assert result.items[1].text == "First line\nsecond line"
    assert messages(result) == [
        "faq.csv line 3: missing question; skipped",
        "faq.csv line 4: missing answer; skipped",
        "faq.csv line 7: 4 fields but the header has 2 (an unquoted delimiter or quote in the text?); skipped",
    ]


def test_trailing_empty_fields_are_not_a_malformed_row() -> None:
    result = parse_bytes("faq.csv", b"question,answer\nOpen on Sunday?,No.,,\n")

    assert [item.text for item in result.items] == ["No."]
    assert result.issues == []


def test_csv_without_question_and_answer_columns_says_which_columns_it_found() -> None:
    result = parse_bytes("faq.csv", b"title,body\nHello,World\n")

    assert result.items == []
    assert messages(result) == [
        "faq.csv line 1: the header needs 'question' and 'answer' columns (found: title, body); nothing imported"
    ]


def test_csv_with_only_a_header_says_nothing_was_found() -> None:
    result = parse_bytes("faq.csv", b"question,answer\n")

    assert result.items == []
    assert messages(result) == ["faq.csv: no entries or text found; nothing imported"]


def test_duplicate_id_keeps_the_first_entry_and_reports_the_later_one() -> None:
    data = b"id,question,answer\n7,First?,Kept.\n8,Other?,Also kept.\n7,Second?,Dropped.\n"

    result = parse_bytes("faq.csv", data)

    assert [(item.key, item.text) for item in result.items] == [("7", "Kept."), ("8", "Also kept.")]
    assert messages(result) == ["faq.csv line 4: duplicate id '7' (first at faq.csv line 2); this one skipped"]


def test_entry_without_id_gets_a_key_from_its_question_that_survives_reparsing() -> None:
    data = b"question,answer\nHow do I reset my password?,Use the link.\n"

    first = parse_bytes("faq.csv", data)
    again = parse_bytes("other-name.csv", data + b"Another?,Yes.\n")

    assert first.items[0].key.startswith("how-do-i-reset-my-password-")
    assert first.items[0].key == again.items[0].key
    assert again.items[1].key != again.items[0].key


def test_language_names_are_normalized_and_unknown_ones_reported() -> None:
    data = b"question,answer,language\nA?,a,Spanish\nB?,b,en-GB\nC?,c,klingon!\n"

    result = parse_bytes("faq.csv", data)

    assert [item.language for item in result.items] == ["es", "en", None]
    assert messages(result) == ["faq.csv line 4: unknown language 'klingon!'; left for automatic detection"]


def test_translation_question_without_its_answer_is_reported_and_the_entry_kept() -> None:
    result = parse_bytes("faq.csv", b"question,answer,question_en\n\xc2\xbfHola?,Hola.,Hello?\n")

    assert result.items[0].translations == ()
    assert messages(result) == ["faq.csv line 2: question_en has no answer_en; that translation ignored"]


# --- encodings and empty files ----------------------------------------------------------------------------------------


def test_windows_1252_file_is_decoded_and_the_admin_is_told() -> None:
    data = "question;answer\n¿Cuánto tarda el envío?;Entre 24 y 48 h, señora.\n".encode("cp1252")

    result = parse_bytes("faq.csv", data)

    assert result.items[0].question == "¿Cuánto tarda el envío?"
    assert result.items[0].text == "Entre 24 y 48 h, señora."
    assert len(result.issues) == 1
    assert "not valid UTF-8" in result.issues[0].message
    assert "decoded as Windows-1252" in result.issues[0].message


def test_utf8_byte_order_mark_is_accepted_silently() -> None:
    result = parse_bytes("faq.csv", "\ufeffquestion,answer\nQ?,A.\n".encode())

    assert [(item.question, item.text) for item in result.items] == [("Q?", "A.")]
    assert result.issues == []


@pytest.mark.parametrize("name", ["faq.csv", "faq.json", "faq.jsonl", "guide.md", "page.html", "notes.txt", "a.pdf"])
@pytest.mark.parametrize("data", [b"", b"  \n\t\n", b"\xef\xbb\xbf"])
def test_empty_file_is_reported_for_every_format(name: str, data: bytes) -> None:
    result = parse_bytes(name, data)

    assert result.items == []
    assert messages(result) == [f"{name}: the file is empty; nothing imported"]


def test_binary_content_with_a_text_extension_is_rejected() -> None:
    result = parse_bytes("notes.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    assert result.items == []
    assert messages(result) == ["notes.txt: the file looks binary (it contains NUL bytes), not text; skipped"]


def test_unsupported_extension_is_reported() -> None:
    result = parse_bytes("catalog.docx", b"PK\x03\x04whatever")

    assert result.items == []
    assert len(result.issues) == 1
    assert result.issues[0].location == "catalog.docx"
    assert result.issues[0].message.startswith("unsupported file type (.docx); use one of .csv, ")


def test_content_type_decides_when_the_name_has_no_known_extension() -> None:
    result = parse_bytes(
        "/help/returns", b"<h1>Returns</h1><p>Send it back within 30 days.</p>", content_type="text/html"
    )

    assert [(item.question, item.text) for item in result.items] == [("Returns", "Send it back within 30 days.")]


def test_a_parser_failure_costs_only_that_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(text: str, source: object) -> ParseResult:
        raise RecursionError("pathologically nested")

    monkeypatch.setitem(parsers._TEXT_PARSERS, "text", explode)

    result = parse_bytes("notes.txt", b"fine text")

    assert messages(result) == ["notes.txt: could not be parsed (RecursionError); skipped"]


def test_nonsensical_chunk_sizes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="chunk_overlap"):
        parse_bytes("a.txt", b"text", chunk_chars=100, chunk_overlap=100)


# --- FAQ JSON and JSONL ---------------------------------------------------------------------------------------------


def test_json_faq_list_and_wrapped_forms_are_both_read() -> None:
    entries = [
        {"id": 1, "question": "Q1?", "answer": "A1", "phrasings": ["other way", "", "other way"], "extra": [1]},
        {
            "question": "¿P2?",
            "answer": "R2",
            "lang": "es",
            "translations": {"en": {"question": "Q2?", "answer": "A2"}},
        },
    ]

    as_list = parse_bytes("faq.json", json.dumps(entries).encode())
    wrapped = parse_bytes("faq.json", json.dumps({"faqs": entries}).encode())

    assert as_list == wrapped
    assert as_list.issues == []
    assert as_list.items[0].key == "1"
    assert as_list.items[0].phrasings == ("other way",)
    assert as_list.items[1].translations == (("en", "Q2?", "A2"),)


def test_json_entries_that_are_not_objects_or_lack_fields_are_reported_by_position() -> None:
    data = json.dumps({"entries": [{"question": "Q?", "answer": "A"}, "stray text", {"question": "Half?"}]})

    result = parse_bytes("faq.json", data.encode())

    assert keys(result) == [result.items[0].key]
    assert messages(result) == [
        "faq.json entry 2: not an object with question and answer; skipped",
        "faq.json entry 3: missing answer; skipped",
    ]


def test_invalid_json_is_reported_with_its_position() -> None:
    result = parse_bytes("faq.json", b'[{"question": "Q?", "answer": "A"},\n {"question": }]')

    assert result.items == []
    assert messages(result) == ["faq.json: invalid JSON at line 2, column 15 (Expecting value); nothing imported"]


def test_json_of_the_wrong_shape_is_reported() -> None:
    result = parse_bytes("faq.json", b'{"version": 2}')

    assert messages(result) == [
        "faq.json: expected a list of entries or an object with 'entries', 'faqs', 'items', 'questions'; "
        "nothing imported"
    ]


def test_jsonl_bad_lines_are_reported_and_the_others_kept() -> None:
    lines = [
        json.dumps({"id": "sm-001", "category": "envíos", "question": "¿Cuánto cuesta?", "answer": "4,95 €"}),
        '{"id": "sm-002", "question": "broken',
        "",
        "[1, 2]",
        json.dumps({"id": "sm-003", "question": "Line\u2028separator?", "answer": "Kept whole."}, ensure_ascii=False),
    ]

    result = parse_bytes("faq.jsonl", "\n".join(lines).encode())

    assert keys(result) == ["sm-001", "sm-003"]
    assert result.items[1].question == "Line\u2028separator?"
    assert messages(result) == [
        "faq.jsonl line 2: invalid JSON at column 30 (Unterminated string starting at); line skipped",
        "faq.jsonl line 4: not a JSON object with question and answer; line skipped",
    ]


def test_json_lines_saved_as_json_are_still_read() -> None:
    data = b'{"question": "Q1?", "answer": "A1"}\n{"question": "Q2?", "answer": "A2"}\n'

    result = parse_bytes("faq.json", data)

    assert [item.question for item in result.items] == ["Q1?", "Q2?"]
    assert messages(result) == ["faq.json: not a single JSON document; read as JSON Lines"]


def test_shared_evaluation_faq_file_parses_cleanly() -> None:
    path = Path("/work/shared/data/soportemax/faq.jsonl")
    if not path.exists():
        pytest.skip("shared evaluation data not present")

    result = parse_file(path, max_bytes=10 * 1024 * 1024)

    assert result.issues == []
    assert len(result.items) == len(path.read_text(encoding="utf-8").splitlines())
    assert all(item.key.startswith("sm-") for item in result.items)


# --- Markdown -------------------------------------------------------------------------------------------------------


FAQ_MARKDOWN = """# Preguntas frecuentes

Intro text that belongs to no question.

## Envíos

### ¿Cuánto tarda el envío
Entre 24 y 48 horas.

Los festivos no cuentan.

### How do I track my order?
Use the link in the e-mail.

```
# not a heading?
```

### ¿Y si no estoy en casa?

## Devoluciones
"""


def test_markdown_with_question_headings_is_an_faq() -> None:
    result = parse_bytes("faq.md", FAQ_MARKDOWN.encode())

    assert [(item.question, item.text) for item in result.items] == [
        ("¿Cuánto tarda el envío", "Entre 24 y 48 horas.\n\nLos festivos no cuentan."),
        ("How do I track my order?", "Use the link in the e-mail.\n\n```\n# not a heading?\n```"),
    ]
    assert messages(result) == ["faq.md line 19: missing answer; skipped"]


GUIDE_MARKDOWN = """# Returns guide

You can return most products.

## Conditions

The product must be unused. {filler}

## Refunds

Refunds take five days.
"""


def test_markdown_without_question_headings_is_chunked_by_section() -> None:
    text = GUIDE_MARKDOWN.format(filler="Keep the box and all accessories. " * 20)

    result = parse_bytes("returns-guide.md", text.encode(), chunk_chars=200, chunk_overlap=20)

    assert result.issues == []
    assert all(item.kind == "chunk" for item in result.items)
    assert keys(result) == [f"returns-guide.md#{number}" for number in range(len(result.items))]
    assert all(len(item.text) <= 200 for item in result.items)
    titles = [item.question for item in result.items]
    assert titles[0] == "Returns guide"
    assert titles.count("Conditions") > 2
    assert titles[-1] == "Refunds"
    assert result.items[-1].text == "Refunds take five days."


def test_chunk_keys_are_stable_across_reparsing_the_same_content() -> None:
    text = GUIDE_MARKDOWN.format(filler="Some more words. " * 50).encode()

    first = parse_bytes("guide.md", text, chunk_chars=300, chunk_overlap=50)
    second = parse_bytes("guide.md", text, chunk_chars=300, chunk_overlap=50)

    assert first.items == second.items


# --- HTML, text and PDF documents -----------------------------------------------------------------------------------


HELP_PAGE = """<!doctype html><html><head><title>Help | Shop</title><style>p {color: red}</style></head>
<body>
<nav><a href="/">Home</a> <a href="/returns">Returns</a></nav>
<div role="navigation">Breadcrumbs</div>
<h1>Shipping</h1>
<p>We ship <b>every</b> weekday.</p>
<h2>Abroad</h2>
<ul><li>Portugal: 3 days</li><li>France: 5 days</li></ul>
<script>alert("tracking")</script>
<footer>© Shop 2024</footer>
</body></html>"""


def test_html_keeps_the_content_and_drops_navigation_scripts_styles_and_footer() -> None:
    result = parse_bytes("shipping.html", HELP_PAGE.encode(), url="https://shop.example/help/shipping")

    assert result.issues == []
    assert [(item.key, item.question, item.text, item.url) for item in result.items] == [
        ("/help/shipping#0", "Shipping", "We ship every weekday.", "https://shop.example/help/shipping"),
        ("/help/shipping#1", "Abroad", "Portugal: 3 days\nFrance: 5 days", "https://shop.example/help/shipping"),
    ]


def test_html_title_falls_back_to_the_title_tag() -> None:
    result = parse_bytes("page.html", b"<title>Opening hours</title><p>9 to 5.</p>")

    assert [(item.question, item.text) for item in result.items] == [("Opening hours", "9 to 5.")]


def test_plain_text_is_chunked_under_a_title_from_the_file_name() -> None:
    result = parse_bytes("opening_hours.txt", b"We open at nine.\n\nWe close at five.", chunk_chars=20, chunk_overlap=0)

    assert [(item.key, item.question, item.text) for item in result.items] == [
        ("opening_hours.txt#0", "Opening hours", "We open at nine."),
        ("opening_hours.txt#1", "Opening hours", "We close at five."),
    ]


def test_pdf_text_is_read_page_by_page() -> None:
    result = parse_bytes("guide.pdf", tiny_pdf("Hello from page one", "Goodbye from page two"))

    assert result.issues == []
    assert [(item.key, item.question, item.text) for item in result.items] == [
        ("guide.pdf#0", "Guide", "Hello from page one"),
        ("guide.pdf#1", "Guide", "Goodbye from page two"),
    ]


def test_pdf_without_extractable_text_is_reported() -> None:
    result = parse_bytes("scan.pdf", blank_pdf())

    assert result.items == []
    assert messages(result) == [
        "scan.pdf: no extractable text (a scanned document? run it through OCR first); nothing imported"
    ]


def test_file_that_is_not_really_a_pdf_is_reported() -> None:
    result = parse_bytes("broken.pdf", b"%PDF-1.4\nthis is not a pdf at all")

    assert result.items == []
    assert len(result.issues) == 1
    assert result.issues[0].message.startswith("could not be read as a PDF (")


# --- files on disk --------------------------------------------------------------------------------------------------


def test_parse_file_reads_a_file_within_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes(b"question,answer\nQ?,A.\n")

    result = parse_file(path, max_bytes=1024)

    assert [item.text for item in result.items] == ["A."]


def test_file_over_the_size_limit_is_rejected_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as file:
        file.truncate(200 * 1024 * 1024)  # sparse: takes no disk, but reading it would take 200 MB of memory

    tracemalloc.start()
    try:
        result = parse_file(path, max_bytes=10 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 1024 * 1024
    assert result.items == []
    assert messages(result) == ["huge.csv: the file is 200.0 MB, over the 10.0 MB limit; skipped"]


def test_missing_file_is_reported(tmp_path: Path) -> None:
    result = parse_file(tmp_path / "gone.csv", max_bytes=1024)

    assert len(result.issues) == 1
    assert result.issues[0].location == "gone.csv"
    assert result.issues[0].message.startswith("the file could not be read (")


# --- crawling -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    delay_s: float = 0.0
    send_length: bool = True


class SiteHandler(BaseHTTPRequestHandler):
    routes: dict[str, Route] = {}
    requested: list[str] = []

    def do_GET(self) -> None:
        self.requested.append(self.path)
        route = self.routes.get(self.path, Route(b"<p>not found</p>", status=404))
        time.sleep(route.delay_s)
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        if route.send_length:
            self.send_header("Content-Length", str(len(route.body)))
        else:
            self.close_connection = True
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the crawler gave up on it, as it should
            self.wfile.write(route.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Site:
    base: str
    handler: type[SiteHandler]

    def serve(self, routes: dict[str, Route]) -> None:
        self.handler.routes = routes


@pytest.fixture
def site() -> Iterator[Site]:
    handler = type("Handler", (SiteHandler,), {"routes": {}, "requested": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Site(f"http://127.0.0.1:{server.server_address[1]}", handler)
    server.shutdown()
    server.server_close()


def page(title: str, *links: str, text: str = "") -> Route:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return Route(
        f"<html><body><nav>{anchors}</nav><h1>{title}</h1><p>{text or title + ' text.'}</p></body></html>".encode()
    )


def test_crawl_follows_same_origin_links_and_reports_each_failed_url(site: Site) -> None:
    site.serve(
        {
            "/": page("Home", "/a", "/missing", "/slow", "/data", "/big", "/streamed", "http://example.com/x", "#top"),
            "/a": page("Page A", "/", "/b?x=1#section", "mailto:help@shop.example", "/logo.png"),
            "/b?x=1": page("Page B"),
            "/slow": Route(b"<p>late</p>", delay_s=1.5),
            "/data": Route(b"PK\x03\x04", content_type="application/zip"),
            "/big": Route(b"<p>" + b"x" * 5000 + b"</p>"),
            "/streamed": Route(b"<p>" + b"y" * 5000 + b"</p>", send_length=False),
        }
    )

    started = time.monotonic()
    result = crawl(f"{site.base}/", max_pages=20, timeout_s=0.5, max_bytes=4000)

    assert time.monotonic() - started < 5
    assert [(item.key, item.question, item.url) for item in result.items] == [
        ("/#0", "Home", f"{site.base}/"),
        ("/a#0", "Page A", f"{site.base}/a"),
        ("/b?x=1#0", "Page B", f"{site.base}/b?x=1"),
    ]
    assert messages(result) == [
        f"{site.base}/missing: HTTP 404 Not Found; skipped",
        f"{site.base}/slow: timed out after 0.5 s; skipped",
        f"{site.base}/data: not a web page, PDF or sitemap (application/zip); skipped",
        f"{site.base}/big: larger than the 3.9 KB limit; skipped",
        f"{site.base}/streamed: larger than the 3.9 KB limit; skipped",
    ]
    assert "/logo.png" not in site.handler.requested


def test_url_that_times_out_is_reported_and_the_crawl_goes_on(site: Site) -> None:
    site.serve(
        {"/": page("Home", "/slow", "/after"), "/slow": Route(b"<p>late</p>", delay_s=1.0), "/after": page("After")}
    )

    result = crawl(f"{site.base}/", max_pages=10, timeout_s=0.2, max_bytes=100_000)

    assert [item.question for item in result.items] == ["Home", "After"]
    assert messages(result) == [f"{site.base}/slow: timed out after 0.2 s; skipped"]


def test_crawl_starts_from_a_sitemap_index(site: Site) -> None:
    index = f"""<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
        <sitemap><loc>{site.base}/pages.xml</loc></sitemap></sitemapindex>"""
    pages = f"""<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
        <url><loc>{site.base}/faq</loc></url><url><loc>{site.base}/guide.pdf</loc></url>
        <url><loc>https://elsewhere.example/page</loc></url></urlset>"""
    site.serve(
        {
            "/sitemap.xml": Route(index.encode(), content_type="application/xml"),
            "/pages.xml": Route(pages.encode(), content_type="text/xml"),
            "/faq": page("FAQ"),
            "/guide.pdf": Route(tiny_pdf("Hello PDF"), content_type="application/pdf"),
        }
    )

    result = crawl(f"{site.base}/sitemap.xml", max_pages=10, timeout_s=2, max_bytes=100_000)

    assert [(item.key, item.text, item.url) for item in result.items] == [
        ("/faq#0", "FAQ text.", f"{site.base}/faq"),
        ("/guide.pdf#0", "Hello PDF", f"{site.base}/guide.pdf#page=1"),
    ]
    assert messages(result) == [f"{site.base}/pages.xml: 1 URLs on other sites or not http(s); ignored"]


def test_crawl_honours_robots_txt(site: Site) -> None:
    site.serve(
        {
            "/robots.txt": Route(b"User-agent: *\nDisallow: /private\n", content_type="text/plain"),
            "/": page("Home", "/private/notes", "/public"),
            "/public": page("Public"),
            "/private/notes": page("Secret"),
        }
    )

    result = crawl(f"{site.base}/", max_pages=10, timeout_s=2, max_bytes=100_000)

    assert [item.question for item in result.items] == ["Home", "Public"]
    assert messages(result) == [f"{site.base}/private/notes: disallowed by the site's robots.txt; skipped"]
    assert "/private/notes" not in site.handler.requested


def test_crawl_stops_at_max_pages_and_says_how_much_was_left(site: Site) -> None:
    site.serve({"/": page("Home", "/1", "/2", "/3"), "/1": page("One"), "/2": page("Two"), "/3": page("Three")})

    result = crawl(f"{site.base}/", max_pages=2, timeout_s=2, max_bytes=100_000)

    assert [item.question for item in result.items] == ["Home", "One"]
    assert messages(result) == [f"{site.base}/2: stopped after 2 pages (the limit); 2 more URLs not read"]


def test_crawl_of_an_unreachable_host_or_a_bad_url_is_an_issue_not_an_error() -> None:
    unreachable = crawl("http://127.0.0.1:9/", max_pages=5, timeout_s=1, max_bytes=1000)
    not_http = crawl("ftp://shop.example/", max_pages=5, timeout_s=1, max_bytes=1000)

    assert unreachable.items == []
    assert len(unreachable.issues) == 1
    assert unreachable.issues[0].message.startswith("could not be fetched (ConnectError")
    assert messages(not_http) == ["ftp://shop.example/: not an http(s) URL; nothing crawled"]


def test_a_question_only_list_is_kept_as_entries_to_match_and_hand_over(tmp_path):
    """Intent lists (every record without an answer) are valid: matched, then handed to a person."""
    path = tmp_path / "intents.jsonl"
    path.write_text(
        '{"id": "a", "question": "How do I freeze my card?", "answer": ""}\n'
        '{"id": "b", "question": "Where is my refund?"}\n'
    )
    result = parse_file(path, max_bytes=10_000)
    assert [(item.key, item.text) for item in result.items] == [("a", ""), ("b", "")]
    assert result.issues == []
