"""What production does to the product, on this machine: Redis, PostgreSQL, the Chroma server and a worker fail
while customers chat. Prints what happened to every message and what /healthz said.

    .venv/bin/python benchmarks/faults.py                      # all four faults, about 6 minutes
    .venv/bin/python benchmarks/faults.py --faults redis,worker --outage 20

It starts its own production-topology stack on 127.0.0.1, as docker-compose.yml runs it, so that it can stop
and start its parts: PostgreSQL (Debian's, run as user postgres), Redis (append-only), the Chroma server,
uvicorn with 2 workers, a Celery worker with 2 processes; the demo knowledge base (setup_demo). For each
fault, ``--loops`` customers arrive one after another (each starts a conversation and asks one question)
before, during and after it:

- redis: stopped for ``--outage`` seconds (the broker and the rate limiter's cache), then started again;
- postgres: restarted (``pg_ctl restart -m fast``), the web processes are not;
- chroma: the Chroma server stopped for ``--outage`` seconds, then started again;
- worker: the Celery worker killed (SIGKILL, with its pool), started again after ``--outage`` seconds.

For each it reports the customers' HTTP statuses (5xx counted), whether every acknowledged message is stored
exactly once, the hand-overs for a technical problem, the turn logs the worker wrote, and /healthz's answers
during and after. Bounded: loopback only, every process it started is stopped, ``--timeout`` overall.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import QUESTIONS  # noqa: E402 (the demo knowledge base's covered questions)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def halt(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop a process and everything it started (its own session), by signal, then by force."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Stack:
    """The production parts as processes on loopback, each one stoppable and startable again."""

    def __init__(self, folder: Path, visibility_s: int) -> None:
        self.folder, self.logs = folder, folder / "logs"
        self.logs.mkdir(parents=True)
        self.ports = {name: free_port() for name in ("postgres", "redis", "chroma", "web")}
        self.processes: dict[str, subprocess.Popen[bytes] | None] = {}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_ALLOW", "CHROMA_", "CACHE_"))},
            "DJANGO_SETTINGS_MODULE": "support.settings",
            "DATA_DIR": str(folder / "data"),
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECRET_KEY": uuid.uuid4().hex,
            "DATABASE_URL": f"postgres://support@127.0.0.1:{self.ports['postgres']}/postgres",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "CACHE_URL": f"redis://127.0.0.1:{self.ports['redis']}/1",
            "CHROMA_URL": f"http://127.0.0.1:{self.ports['chroma']}",
            "CELERY_VISIBILITY_TIMEOUT_S": str(visibility_s),
            "BUSINESS_HOURS": "always",
            "CHAT_IP_RATE_LIMIT_PER_MINUTE": "100000",  # every customer here comes from 127.0.0.1
            "EMBEDDING_THREADS": "1",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise SystemExit("PostgreSQL is not installed: run scripts/system-deps.sh")
        self.pg_bin = Path(bins[-1])
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _spawn(self, name: str, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        self.processes[name] = process
        return process

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True)

    # --- PostgreSQL: its own server, as user postgres (it refuses root) -------------------------------
    def pg_ctl(self, *args: str) -> None:
        data = self.folder / "pg" / "data"
        options = f"-h 127.0.0.1 -p {self.ports['postgres']} -k {self.folder / 'pg'} -c max_connections=100"
        command = [*self.as_postgres, str(self.pg_bin / "pg_ctl"), "-D", str(data), *args]
        if args[0] in ("start", "restart"):
            command += ["-o", options, "-l", str(self.logs / "postgres.log")]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start_postgres(self) -> None:
        folder = self.folder / "pg"
        folder.mkdir(mode=0o755)
        if self.as_postgres:
            shutil.chown(folder, "postgres")
            shutil.chown(self.logs, "postgres")
        initdb = [*self.as_postgres, str(self.pg_bin / "initdb"), "-D", str(folder / "data"), "-U", "support"]
        subprocess.run([*initdb, "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        self.pg_ctl("start", "-w")

    # --- the rest ------------------------------------------------------------------------------------
    def start(self, name: str) -> None:
        port = self.ports.get(name)
        if name == "redis":
            self._spawn(name, [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port",
                               str(port), "--dir", str(self.folder), "--appendonly", "yes", "--save", ""])  # fmt: skip
        elif name == "chroma":
            self._spawn(name, [str(BIN / "chroma"), "run", "--path", str(self.folder / "chroma"),
                               "--host", "127.0.0.1", "--port", str(port)])  # fmt: skip
        elif name == "web":
            self._spawn(name, [sys.executable, "-m", "uvicorn", "support.asgi:application", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "2", "--no-access-log"])  # fmt: skip
        elif name == "worker":
            self._spawn(name, [sys.executable, "-m", "celery", "-A", "support", "worker", "--concurrency", "2",
                               "--loglevel", "WARNING", "--without-mingle", "--without-gossip"])  # fmt: skip
        if port is not None:
            wait_port(port, timeout=120)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        halt(self.processes.pop(name, None), sig)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"

    def up(self) -> None:
        self.start_postgres()
        for name in ("redis", "chroma"):
            self.start(name)
        self.manage("migrate", "--no-input")
        self.manage("setup_demo")
        for name in ("web", "worker"):
            self.start(name)
        deadline = time.monotonic() + 120
        while health(self.base) != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"the stack never became healthy; logs in {self.logs}")
            time.sleep(0.5)

    def down(self) -> None:
        for name in ("worker", "web", "chroma", "redis"):
            self.stop(name)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.pg_ctl("stop", "-m", "immediate")


def health(base: str) -> int | str:
    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


@dataclass
class Sent:
    phase: str
    start: int | str = 0
    status: int | str = 0
    conversation: str = ""
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    acknowledged: bool = False
    replies: int = 0


class Traffic:
    """``loops`` customers at a time, each starting a conversation and asking one question, until stopped."""

    def __init__(self, base: str, loops: int) -> None:
        self.base, self.phase, self.sent, self.health = base, "before", list[Sent](), list[tuple[str, int | str]]()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._customers, daemon=True) for _ in range(loops)]
        self.threads.append(threading.Thread(target=self._healthz, daemon=True))

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _customers(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self.stopping.is_set():
                sent = Sent(self.phase)
                self.sent.append(sent)
                try:
                    started = client.post("/api/conversations", json={"kb": "default"})
                    sent.start = started.status_code
                    if started.status_code != 201:
                        time.sleep(0.5)
                        continue
                    body = started.json()
                    sent.conversation = body["id"]
                    answer = client.post(
                        f"/api/conversations/{body['id']}/messages",
                        json={"text": random.choice(QUESTIONS), "client_id": sent.client_id},
                        headers={"Authorization": f"Bearer {body['token']}"},
                    )
                    sent.status = answer.status_code
                    if answer.status_code == 201:
                        sent.acknowledged = True
                        sent.replies = len(answer.json().get("replies") or [])
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    sent.status = sent.status or type(exc).__name__
                    time.sleep(0.5)

    def _healthz(self) -> None:
        while not self.stopping.wait(1.0):
            self.health.append((self.phase, health(self.base)))


def inject(stack: Stack, fault: str, outage_s: float) -> None:
    if fault == "postgres":
        stack.pg_ctl("restart", "-m", "fast", "-w")
        time.sleep(outage_s)  # the same observation window as the others
    elif fault == "worker":
        stack.stop("worker", signal.SIGKILL)
        time.sleep(outage_s)
        stack.start("worker")
    else:
        stack.stop(fault)
        time.sleep(outage_s)
        stack.start(fault)


def check_database(sent: list[Sent], since: Any) -> dict[str, Any]:
    """Every acknowledged message stored exactly once; hand-overs for a technical problem; turn logs written."""
    from django.db import close_old_connections

    from chat.models import Message, Ticket
    from learning.models import TurnLog

    close_old_connections()
    acknowledged = [s for s in sent if s.acknowledged]
    copies = collections.Counter(
        Message.objects.filter(client_id__in=[s.client_id for s in acknowledged], role="customer").values_list(
            "client_id", flat=True
        )
    )
    questions = Message.objects.filter(client_id__in=[s.client_id for s in sent], role="customer")
    deadline = time.monotonic() + 120  # the worker logs turns a moment later (or after a visibility timeout)
    while TurnLog.objects.filter(question__in=questions).count() < questions.count() and time.monotonic() < deadline:
        time.sleep(2)
    return {
        "acknowledged": len(acknowledged),
        "stored_once": sum(1 for s in acknowledged if copies[s.client_id] == 1),
        "stored_twice_or_more": sum(1 for s in acknowledged if copies[s.client_id] > 1),
        "technical_handovers": Ticket.objects.filter(created_at__gte=since, reason="system_error").count(),
        "turn_logs": f"{TurnLog.objects.filter(question__in=questions).count()} of {questions.count()}",
    }


def summarise(values: list[int | str]) -> str:
    return ", ".join(f"{value}×{count}" for value, count in collections.Counter(map(str, values)).most_common())


def run_fault(stack: Stack, fault: str, loops: int, outage_s: float) -> dict[str, Any]:
    from django.utils import timezone

    since = timezone.now()
    with Traffic(stack.base, loops) as traffic:
        time.sleep(5)
        traffic.phase = "during"
        inject(stack, fault, outage_s)
        traffic.phase = "after"
        deadline = time.monotonic() + 90
        while health(stack.base) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(10)
    result: dict[str, Any] = {"fault": fault}
    for phase in ("before", "during", "after"):
        sent = [s for s in traffic.sent if s.phase == phase]
        result[phase] = {
            "customers": len(sent),
            "starts": summarise([s.start for s in sent]),
            "messages": summarise([s.status for s in sent if s.start == 201]),
            "healthz": summarise([status for p, status in traffic.health if p == phase]),
        }
    codes = [s.start for s in traffic.sent] + [s.status for s in traffic.sent]
    result["http_5xx"] = sum(1 for code in codes if isinstance(code, int) and code >= 500)
    result["healthz_now"] = health(stack.base)
    result.update(check_database(traffic.sent, since))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default="redis,postgres,chroma,worker")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds each part stays down")
    parser.add_argument("--loops", type=int, default=4, help="customers arriving at the same time")
    parser.add_argument("--visibility", type=int, default=60, help="CELERY_VISIBILITY_TIMEOUT_S for the run")
    parser.add_argument("--timeout", type=float, default=1200, help="overall limit in seconds")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (logs, data) afterwards")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - {"redis", "postgres", "chroma", "worker"}
    if unknown:
        raise SystemExit(f"unknown faults: {sorted(unknown)}")

    folder = Path(tempfile.mkdtemp(prefix="faults-"))
    folder.chmod(0o755)
    stack = Stack(folder, args.visibility)

    def give_up(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum} (or over --timeout {args.timeout:.0f}s): stopping the stack")

    for signum in (signal.SIGALRM, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, give_up)  # so that `finally` stops every process this started
    signal.alarm(int(args.timeout))
    results = []
    try:
        print(f"starting the stack in {folder} …", flush=True)
        stack.up()
        os.environ.update(stack.env)
        import django

        sys.path.insert(0, str(ROOT))
        django.setup()
        for fault in faults:
            print(f"fault: {fault} ({args.outage:.0f} s) …", flush=True)
            results.append(run_fault(stack, fault, args.loops, args.outage))
            print(json.dumps(results[-1], indent=2, ensure_ascii=False), flush=True)
    finally:
        signal.alarm(0)
        stack.down()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print("\nfault     5xx  acknowledged  stored once  technical hand-overs  turn logs  /healthz during → after")
    for r in results:
        print(
            f"{r['fault']:<9} {r['http_5xx']:>3}  {r['acknowledged']:>12}  {r['stored_once']:>11}  "
            f"{r['technical_handovers']:>20}  {r['turn_logs']:>9}  {r['during']['healthz']} → {r['healthz_now']}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    failed = any(r["http_5xx"] or r["stored_once"] != r["acknowledged"] or r["healthz_now"] != 200 for r in results)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
