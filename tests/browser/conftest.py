"""Fixtures for the browser tests: the real product under uvicorn, a host site on another origin, Chromium.

Run them in their own pytest process: `.venv/bin/pytest -m browser` (Playwright's sync API and asyncio tests
don't share a process well).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    Product,
    host_site,
    running_product,
    write_host_pages,
)

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls under one without this.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    root = tmp_path_factory.mktemp("browser")
    site = root / "site"
    site.mkdir()
    log = root / "uvicorn.log"
    # tests.browser.app: the product's app, with routing offering choices for a few fixed messages
    with (
        host_site(site) as host,
        running_product(root / "data", host, log, "tests.browser.app:application") as (
            base,
            env,
        ),
    ):
        write_host_pages(site, base)
        yield Product(base=base, host=host, env=env, log=log)


@pytest.fixture(scope="session")
def away_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    """The same product outside business hours: its team works one hour on one day, three days from today."""
    from django.utils import timezone

    from chat.hours import DAYS

    root = tmp_path_factory.mktemp("browser-away")
    site = root / "site"
    site.mkdir()
    log = root / "uvicorn.log"
    hours = f"{DAYS[(timezone.localtime().weekday() + 3) % 7]} 09:00-10:00"
    with (
        host_site(site) as host,
        running_product(root / "data", host, log, "tests.browser.app:application", BUSINESS_HOURS=hours) as (
            base,
            env,
        ),
    ):
        write_host_pages(site, base)
        yield Product(base=base, host=host, env=env, log=log)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def watched_page(browser: Any, **context_options: Any) -> Iterator[Any]:
    """A page in a fresh browser profile (its own localStorage) that fails the test on any script error or dialog;
    ``context_options`` go to ``browser.new_context`` (a 1280x800 viewport unless given)."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_options})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.problems = problems
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture
def page(browser: Any, product: Product) -> Iterator[Any]:
    yield from watched_page(browser)


@pytest.fixture
def screenshot() -> Any:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    return take
