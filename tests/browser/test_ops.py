"""Ops in the real admin: branded pages, help on adding a source, "Retrain now" from an empty jobs list and from one
with jobs, error pages, a sources list whose sync results fit the screen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.server import REPO, Product

pytestmark = pytest.mark.browser

DOCS = REPO / "docs"

# How a list cell shows its text: all of it (nothing scrolled away or cut by an ellipsis), inside the window?
CELL_FITS = """cell => ({
  text: cell.innerText,
  clipped: cell.scrollWidth > cell.clientWidth,
  ellipsis: getComputedStyle(cell).textOverflow === 'ellipsis',
  right: cell.getBoundingClientRect().right,
  window: window.innerWidth,
})"""


def password(product: Product, user: str = "admin") -> str:
    return str(json.loads((Path(product.env["DATA_DIR"]) / "demo-logins.json").read_text())[user])


def log_in(page: Any, product: Product, user: str, next_url: str = "/admin/") -> None:
    page.goto(f"{product.base}/admin/login/?next={next_url}")
    page.fill("#id_username", user)
    page.fill("#id_password", password(product, user))
    page.get_by_role("button", name="Log in").click()


def test_ops_add_a_source_and_retrain_from_branded_pages(page: Any, product: Product, screenshot: Any) -> None:
    page.goto(f"{product.base}/admin/login/")
    expect(page.locator("#site-name")).to_have_text("Support bot — admin")
    page.fill("#id_username", "admin")
    page.fill("#id_password", password(product))
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_title("Home | Support bot admin")
    expect(page.get_by_text("Django administration")).to_have_count(0)

    page.goto(f"{product.base}/admin/knowledge/source/add/")
    expect(page.locator("#source-formats")).to_be_visible()
    expect(page.locator("#source-formats")).to_contain_text("pregunta")
    expect(page.locator("#id_knowledge_base option:checked")).to_have_text("Rodamar")
    screenshot(page, "ops-add-source")

    page.goto(f"{product.base}/admin/knowledge/source/")
    expect(page.get_by_role("heading", name="Sources", exact=True)).to_be_visible()
    expect(page.locator("td.field-result").first).to_contain_text("added")

    page.goto(f"{product.base}/admin/learning/retrainingjob/")
    expect(page.locator("#no-jobs")).to_contain_text("No retraining jobs yet.")
    screenshot(page, "ops-retraining-empty")
    page.locator("#retrain-now").click()
    expect(page.get_by_role("heading", name="Retraining job:", exact=False)).to_be_visible()
    expect(page.get_by_text("Times are in", exact=False)).to_be_visible()
    expect(page.locator('input[name="_save"]')).to_have_count(0)
    page.screenshot(path=str(DOCS / "ops-retraining-job.png"))  # the README's picture of a job

    # With a job on it, the list still offers the button, above the jobs.
    page.goto(f"{product.base}/admin/learning/retrainingjob/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#no-jobs")).to_have_count(0)
    expect(page.get_by_role("button", name="Retrain now")).to_be_visible()

    page.goto(f"{product.base}/admin/no-such-page/")
    expect(page.get_by_role("heading", name="We couldn't find that page")).to_be_visible()
    expect(page.get_by_role("link", name="Back to the admin home")).to_be_visible()
    screenshot(page, "ops-404")


def test_the_sync_result_and_status_columns_are_shown_whole_at_1280_px(page: Any, product: Product) -> None:
    log_in(page, product, "olga", "/admin/knowledge/source/")  # ops
    expect(page.get_by_role("heading", name="Sources", exact=True)).to_be_visible()
    assert page.viewport_size["width"] == 1280
    results = page.locator("#result_list tbody td.field-result")
    expect(results.first).to_contain_text("held for review")  # the last part of the counts
    statuses = page.locator("#result_list tbody td.field-sync_status")
    assert results.count() == statuses.count() > 0
    for cells in (results, statuses):
        for index in range(cells.count()):
            shown = cells.nth(index).evaluate(CELL_FITS)
            assert shown["text"].strip(), shown
            assert not shown["clipped"], shown
            assert not shown["ellipsis"], shown
            assert shown["right"] <= shown["window"], shown
