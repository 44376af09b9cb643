"""Ops watch a knowledge sync in the real admin: the sources page follows it to the end by itself.

Here the sync runs where it runs in production, in a Celery worker (not eagerly in the web request as in the other
browser tests), with `make run`'s topology: a Chroma server, uvicorn and the worker sharing one data folder. The
worker starts only once the page shows the source queued, so the page is seen changing without anyone reloading it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.server import Product, host_site, running_product
from tests.integration.product import celery_worker, chroma_server

pytestmark = pytest.mark.browser

FAQ_CSV = (
    "id,question,answer,language\n"
    "w-1,Do you deliver on Sundays?,No: deliveries are Monday to Saturday.,en\n"
    "w-2,Can I pick the bike up myself?,Yes: at any Rodamar shop.,en\n"
    "w-3,¿Puedo recoger la bici yo mismo?,Sí: en cualquier tienda Rodamar.,es\n"
)


@pytest.fixture(scope="module")
def worker_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Product, Callable[[], None]]]:
    """The product with a real (not eager) task queue, and a function that starts its Celery worker."""
    root = tmp_path_factory.mktemp("browser-sync")
    site = root / "site"
    site.mkdir()
    data = root / "data"
    with ExitStack() as stack:
        chroma_url = stack.enter_context(chroma_server(data / "chroma", root / "chroma.log"))
        host = stack.enter_context(host_site(site))
        base, env = stack.enter_context(
            running_product(data, host, root / "uvicorn.log", CELERY_TASK_ALWAYS_EAGER="false", CHROMA_URL=chroma_url)
        )

        def start_worker() -> None:
            stack.enter_context(celery_worker(env, root / "worker.log"))  # stopped with the rest, at the end

        yield Product(base=base, host=host, env=env, log=root / "uvicorn.log"), start_worker


def test_the_sources_page_follows_a_sync_in_the_worker_to_the_end_without_a_reload(
    page: Any, worker_product: tuple[Product, Callable[[], None]], tmp_path: Path
) -> None:
    product, start_worker = worker_product
    password = json.loads((Path(product.env["DATA_DIR"]) / "demo-logins.json").read_text())["olga"]
    page.goto(f"{product.base}/admin/login/?next=/admin/knowledge/source/add/")
    page.fill("#id_username", "olga")  # ops
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()

    faq = tmp_path / "pickup-faq.csv"
    faq.write_text(FAQ_CSV, encoding="utf-8")
    page.fill("#id_name", "Pick-up FAQ")
    page.select_option("#id_kind", "file")
    page.set_input_files("#id_upload", str(faq))
    polls: list[str] = []
    page.on(
        "request", lambda request: polls.append(request.url) if "/knowledge/source/status/" in request.url else None
    )
    page.locator('input[name="_save"]').click()

    row = page.locator("#result_list tbody tr", has_text="Pick-up FAQ")
    status = row.locator("[data-sync-status]")
    expect(page.locator(".messagelist")).to_contain_text("its progress updates on this page")
    expect(status).to_have_text("Queued")  # no worker yet
    page.wait_for_timeout(2500)
    assert polls, "the page does not ask for the sync's state while it is queued"
    expect(status).to_have_text("Queued")

    # The source's own page follows it too.
    source_id = status.get_attribute("data-sync-status")
    detail = page.context.new_page()
    detail.goto(f"{product.base}/admin/knowledge/source/{source_id}/change/")
    expect(detail.locator("[data-sync-status]")).to_have_text("Queued")

    start_worker()
    expect(status).to_have_text("Synced", timeout=120_000)  # followed by the page itself: the test never reloads
    expect(row.locator("td.field-result")).to_contain_text("3 added")
    expect(row.locator("[data-sync-progress]")).to_have_text("—")
    expect(detail.locator("[data-sync-status]")).to_have_text("Synced", timeout=30_000)
    expect(detail.locator(".field-added .readonly")).to_have_text("3")
    detail.close()

    # Re-sync from the list: queued again, then back to synced with nothing changed.
    row.locator("input.action-select").check()
    page.select_option('select[name="action"]', "resync")
    page.locator('button[name="index"]').click()
    expect(page.locator(".messagelist")).to_contain_text("Re-sync queued.")
    expect(status).to_have_text("Synced", timeout=120_000)
    expect(row.locator("td.field-result")).to_contain_text("0 added, 0 updated, 3 unchanged", timeout=30_000)
