"""Ops in the real admin: branded pages, help on adding a source, "Retrain now" from an empty jobs list, error pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.server import Product

pytestmark = pytest.mark.browser


def admin_password(product: Product) -> str:
    return str(json.loads((Path(product.env["DATA_DIR"]) / "demo-logins.json").read_text())["admin"])


def test_ops_add_a_source_and_retrain_from_branded_pages(page: Any, product: Product, screenshot: Any) -> None:
    page.goto(f"{product.base}/admin/login/")
    expect(page.locator("#site-name")).to_have_text("Support bot — admin")
    page.fill("#id_username", "admin")
    page.fill("#id_password", admin_password(product))
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
    screenshot(page, "ops-retraining-job")

    page.goto(f"{product.base}/admin/no-such-page/")
    expect(page.get_by_role("heading", name="We couldn't find that page")).to_be_visible()
    expect(page.get_by_role("link", name="Back to the admin home")).to_be_visible()
    screenshot(page, "ops-404")
