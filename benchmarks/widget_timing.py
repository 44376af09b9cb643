"""How fast the widget feels, measured in real Chromium against the real product (uvicorn, demo knowledge base).

    .venv/bin/python benchmarks/widget_timing.py [--runs 20] [--app http://127.0.0.1:8000]

Each run is a fresh browser profile on a host page served from another origin. Prints the p50 (and p90) of:
  open:         launcher click -> panel shown and the message box focused (next frame)
  first token:  Send -> first visible piece of the answer, first message (includes creating the conversation)
  next token:   the same for a second message in the same conversation
Without --app it starts the product itself (temp DATA_DIR, migrate, setup_demo, uvicorn), as the browser tests do.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, host_site, running_product, write_host_pages

QUESTIONS = ("How much is the subscription?", "¿Cuánto cuesta la suscripción?")

OPEN_JS = """async () => {
  const root = document.querySelector('[data-support-chat]').shadowRoot;
  const input = root.querySelector('textarea');
  const t0 = performance.now();
  root.querySelector('.launcher').click();
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)));
  if (root.activeElement !== input || !input.offsetParent) throw new Error('message box not ready');
  return performance.now() - t0;
}"""

FIRST_PIECE_JS = """async (text) => {
  const root = document.querySelector('[data-support-chat]').shadowRoot;
  const log = root.querySelector('[role=log]');
  const input = root.querySelector('textarea');
  const answered = () => log.querySelectorAll('.msg[data-id]:not(.customer)').length;
  const before = answered();
  let t0 = 0;
  const shown = new Promise((resolve, reject) => {
    const observer = new MutationObserver(() => {
      const live = log.querySelector('.msg.bot:not([data-id]):not(.greet) .bubble:not(.typing)');
      if ((live && live.textContent) || answered() > before) {
        observer.disconnect();
        resolve(performance.now() - t0);
      }
    });
    observer.observe(log, {childList: true, subtree: true, characterData: true});
    setTimeout(() => reject(new Error('no answer within 30 s')), 30000);
  });
  input.value = text;
  input.dispatchEvent(new Event('input'));
  t0 = performance.now();
  root.querySelector('.send').click();
  const ms = await shown;
  // the reply finishes before the next question (aria-busy is set while a reply streams)
  while (log.getAttribute('aria-busy') === 'true') await new Promise((resolve) => setTimeout(resolve, 20));
  return ms;
}"""


@contextlib.contextmanager
def app_and_host(app: str | None) -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="widget-bench-") as tmp:
        root = Path(tmp)
        site = root / "site"
        site.mkdir()
        with host_site(site) as host:
            if app:
                write_host_pages(site, app.rstrip("/"))
                yield app.rstrip("/"), host
                return
            with running_product(root / "data", host, root / "uvicorn.log") as (base, _env):
                write_host_pages(site, base)
                yield base, host


def describe(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{name:<12} p50 {statistics.median(values):7.1f} ms   p90 {p90:7.1f} ms   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--app", help="an already running app (API + widget.js); default: start one")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    opens: list[float] = []
    firsts: list[float] = []
    nexts: list[float] = []
    with app_and_host(args.app) as (base, host), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        print(f"app {base}, host page {host}")
        for run in range(args.runs + 1):  # run 0 warms caches and is not counted
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(f"{host}/shop-en.html")
            page.wait_for_load_state("networkidle")
            opened = page.evaluate(OPEN_JS)
            first = page.evaluate(FIRST_PIECE_JS, QUESTIONS[run % 2])
            second = page.evaluate(FIRST_PIECE_JS, QUESTIONS[(run + 1) % 2])
            context.close()
            if run:
                opens.append(opened)
                firsts.append(first)
                nexts.append(second)
        browser.close()
    print(describe("open", opens))
    print(describe("first token", firsts))
    print(describe("next token", nexts))


if __name__ == "__main__":
    main()
