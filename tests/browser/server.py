"""Start the real product (migrate, setup_demo, uvicorn) in a temp DATA_DIR, and serve a host page from another origin.

Shared by tests/browser/conftest.py and benchmarks/widget_timing.py. SSE needs ASGI, so this is uvicorn, not
pytest-django's WSGI live_server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.processes import stop

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

IDENTITY_SECRET = "browser-test-site-secret"

HOST_PAGE = """<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Host shop</title>
<style>
  body {{ font: 20px Georgia, serif; color: #7a0000; }} button {{ background: lime; }}
  * {{ letter-spacing: 1px; }}
</style>
</head>
<body>
<h1>Rodamar (host page on another origin)</h1>
<p><a href="#top">A link before the widget</a></p>
<script src="{app}/static/chat/widget.js" data-title="Rodamar" data-color="#0b5fff" data-lang="{lang}"
        data-position="right" data-kb="default" defer></script>
</body>
</html>
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def product_env(data_dir: Path, host_origin: str, **extra: str) -> dict[str, str]:
    """The product's environment; ``extra`` overrides (another BUSINESS_HOURS, a real broker, a Chroma server)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "support.settings",
        "DATA_DIR": str(data_dir),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "warning",
        "DEBUG": "false",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "CHAT_ALLOWED_ORIGINS": host_origin,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "BUSINESS_HOURS": "always",  # a hand-off means "a person will come", whatever the hour of the test
        "CHAT_RATE_LIMIT_PER_MINUTE": "1000",
        "CHAT_IP_RATE_LIMIT_PER_MINUTE": "10000",
        "CHAT_IDENTITY_SECRET": IDENTITY_SECRET,  # host pages may sign who their customer is
        "EMBEDDING_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the product runs as it does in production
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise TimeoutError(f"{base}/healthz not healthy after {timeout}s: {last}")


@contextlib.contextmanager
def host_site(directory: Path) -> Iterator[str]:
    """A plain static site on its own loopback port: the customer's page that embeds the widget."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def write_host_pages(directory: Path, app: str) -> None:
    for lang in ("es", "en"):
        (directory / f"shop-{lang}.html").write_text(HOST_PAGE.format(app=app, lang=lang), encoding="utf-8")


@contextlib.contextmanager
def running_product(
    data_dir: Path, host_origin: str, log_path: Path, app: str = "support.asgi:application", **extra: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """Yields (base URL, environment for manage.py calls against the same data). ``app``: the ASGI app to serve;
    ``extra``: environment variables that differ from the browser tests' usual ones (see ``product_env``)."""
    env = product_env(data_dir, host_origin, **extra)
    (data_dir / "celery-broker").mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "--noinput")
    manage(env, "setup_demo")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            try:
                wait_healthy(base, process)
            except (RuntimeError, TimeoutError) as exc:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{exc}\n--- uvicorn log ---\n{tail}") from exc
            yield base, env
        finally:
            stop(process)


@dataclass
class Product:
    base: str  # the support app (API and widget.js)
    host: str  # the customer's site, another origin
    env: dict[str, str]
    log: Path

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)

    def shell(self, code: str) -> str:
        return manage(self.env, "shell", "-c", code)


def stored_conversation(page: Any) -> dict[str, Any]:
    """The widget's {id, token, ...} record from the host page's localStorage."""
    raw = page.evaluate(
        "() => Object.entries(localStorage).filter(([k]) => k.startsWith('support-chat:')).map(([, v]) => v)[0]"
    )
    assert raw, "the widget stored no conversation"
    return dict(json.loads(raw))
