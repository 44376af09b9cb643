"""Many customers at once against a running server, then a check in its database that nothing was lost or doubled.

    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8000 --customers 200 --messages 5

Each customer does what the widget does: starts a conversation (POST /api/conversations), then posts
``--messages`` different questions one after another (POST .../messages, Accept: text/event-stream) and reads
each turn's SSE stream to its end (with ``--events`` it also keeps the live-events stream open, as the widget
does). All customers run at once. Bounded: loopback servers only, N × M messages,
and a global ``--timeout`` after which whatever is still running is cancelled and counted. It reports HTTP
status counts and p50/p95 per message (request sent → stream ended), then, with the server's own settings
(run it with the same DATABASE_URL and DATA_DIR as the server), checks in the database that:

- every acknowledged customer message (its `customer` event) is stored exactly once, with its text;
- every reply the stream delivered is stored exactly once, as the one reply to its message;
- every replied turn is logged for learning (learning.TurnLog, written by the Celery worker; waited for).

Exit status 1 when any request got a 5xx, timed out or failed, or the database check found a problem.
``--forwarded-for`` gives each customer its own X-Forwarded-For address (a server behind a trusted proxy
counts per-IP limits per customer); otherwise all customers share 127.0.0.1's per-IP rate limit.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, percentiles

# Covered questions of the demo knowledge base (setup_demo), Spanish and English; a customer never repeats one
# (asking again counts as a failed answer and hands the conversation over).
QUESTIONS = [
    "¿Cuánto cuesta la suscripción?",
    "How do I cancel my subscription?",
    "¿Cuánto tarda en llegar la bici?",
    "Which cities are you in?",
    "¿Cuánta autonomía tiene la batería?",
    "What payment methods do you accept?",
    "¿Puedo pausar la suscripción en vacaciones?",
    "Can I switch to another bike model?",
    "¿Cuál es el horario de atención al cliente?",
    "Is there a minimum age to subscribe?",
]


RETRIES = 2
RETRIED = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError)


@dataclass
class Sent:
    """One message as the client saw it."""

    conversation: str
    client_id: str
    text: str
    status: int | str = 0  # HTTP status, or "timeout" / an exception's name
    ms: float = 0.0
    message_id: int | None = None  # from the `customer` event: the server acknowledged it
    replies: list[dict[str, Any]] = field(default_factory=list)  # `message` events
    error_events: int = 0
    done: bool = False  # the stream reached its `done` event
    retries: int = 0


@dataclass
class Run:
    starts: list[int | str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    events: list[int | str] = field(default_factory=list)  # statuses of the live-events streams opened
    cancelled: int = 0


def loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a name: never resolved, never a target
    if not loopback:
        raise SystemExit(f"refusing {url}: this load test only targets servers on this machine (127.0.0.1, ::1)")


def parse_sse(lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    events, name, data = [], "", ""
    for line in [*lines, ""]:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif not line and name:
            events.append((name, json.loads(data or "{}")))
            name, data = "", ""
    return events


async def listen(client: httpx.AsyncClient, conversation: str, headers: dict[str, str], run: Run) -> None:
    """The widget's live-events stream (agent replies, status), reopened whenever the server closes it."""
    while True:
        try:
            async with client.stream("GET", f"/api/conversations/{conversation}/events", headers=headers) as response:
                run.events.append(response.status_code)
                async for _ in response.aiter_lines():
                    pass
        except (httpx.HTTPError, OSError) as exc:
            run.events.append(type(exc).__name__)
            await asyncio.sleep(1)


async def customer(
    client: httpx.AsyncClient, n: int, messages: int, run: Run, forwarded_for: bool, events: bool
) -> None:
    headers = {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"} if forwarded_for else {}
    try:
        response = await client.post("/api/conversations", json={"kb": "default"}, headers=headers)
    except (httpx.HTTPError, OSError) as exc:
        run.starts.append(type(exc).__name__)
        return
    run.starts.append(response.status_code)
    if response.status_code != 201:
        return
    body = response.json()
    headers |= {"Authorization": f"Bearer {body['token']}", "Accept": "text/event-stream"}
    listening = asyncio.create_task(listen(client, body["id"], headers, run)) if events else None
    try:
        await converse(client, n, body["id"], messages, headers, run)
    finally:
        if listening is not None:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)


async def converse(
    client: httpx.AsyncClient, n: int, conversation: str, messages: int, headers: dict[str, str], run: Run
) -> None:
    for k in range(messages):
        sent = Sent(conversation, uuid.uuid4().hex, QUESTIONS[(n + k) % len(QUESTIONS)])
        run.sent.append(sent)
        started = time.perf_counter()
        lines: list[str] = []
        for attempt in range(RETRIES + 1):
            try:
                async with client.stream(
                    "POST",
                    f"/api/conversations/{sent.conversation}/messages",
                    json={"text": sent.text, "client_id": sent.client_id},
                    headers=headers,
                ) as response:
                    sent.status = response.status_code
                    lines = [line async for line in response.aiter_lines()]
                break
            except (httpx.HTTPError, OSError) as exc:
                if sent.status or attempt == RETRIES or not isinstance(exc, RETRIED):
                    sent.status = f"{sent.status} then {type(exc).__name__}" if sent.status else type(exc).__name__
                    break
                # A kept-alive connection the server closed as it was reused, before any answer: send it again
                # with the same client_id, as the widget does (the server stores it once either way).
                sent.retries += 1
        sent.ms = (time.perf_counter() - started) * 1000
        if sent.status != 200:
            continue
        for event, data in parse_sse(lines):
            if event == "customer":
                sent.message_id = int(data["id"])
            elif event == "message":
                sent.replies.append(data)
            elif event == "error":
                sent.error_events += 1
            elif event == "done":
                sent.done = True


async def load(
    url: str, customers: int, messages: int, timeout: float, forwarded_for: bool, events: bool
) -> tuple[Run, float]:
    run = Run()
    connections = customers * (2 if events else 1)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        tasks = [
            asyncio.create_task(customer(client, n, messages, run, forwarded_for, events)) for n in range(customers)
        ]
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        run.cancelled = len(pending)
        return run, time.perf_counter() - started


def check_database(run: Run, log_wait: float) -> dict[str, Any]:
    """Compare what the clients saw with what the database holds (the server's DATABASE_URL)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    from django.db.models import Count

    from chat.models import Message
    from learning.models import TurnLog

    acked = [s for s in run.sent if s.message_id is not None]
    conversations = {s.conversation for s in run.sent}
    problems: list[str] = []

    stored = {
        m.pk: m
        for m in Message.objects.filter(conversation_id__in=conversations, role=Message.Role.CUSTOMER).only(
            "pk", "text", "client_id", "conversation_id"
        )
    }
    per_client_id = collections.Counter(m.client_id for m in stored.values())
    for s in acked:
        message = stored.get(s.message_id or 0)
        if message is None or message.text != s.text or message.client_id != s.client_id:
            problems.append(f"customer message {s.message_id} is missing or differs")
        elif per_client_id[s.client_id] != 1:
            problems.append(f"customer message {s.client_id} is stored {per_client_id[s.client_id]} times")
    unacked_stored = len(stored) - len(acked)

    reply_rows = collections.defaultdict(list)
    for pk, reply_to in Message.objects.filter(
        conversation_id__in=conversations, role__in=[Message.Role.BOT, Message.Role.SYSTEM], reply_to__isnull=False
    ).values_list("pk", "reply_to_id"):
        reply_rows[reply_to].append(pk)
    replied = [s for s in acked if s.replies]
    for s in acked:
        seen = sorted(int(r["id"]) for r in s.replies)
        stored_replies = reply_rows.get(s.message_id or 0, [])
        if seen != sorted(stored_replies):
            problems.append(f"message {s.message_id}: replies seen {seen}, stored {stored_replies}")

    wanted = {s.message_id for s in replied}
    deadline = time.monotonic() + log_wait
    logged: dict[int, int] = {}
    while True:
        logged = dict(
            TurnLog.objects.filter(question_id__in=wanted)
            .values("question_id")
            .annotate(n=Count("pk"))
            .values_list("question_id", "n")
        )
        if len(logged) == len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(1)
    missing_logs = wanted - set(logged)
    if missing_logs:
        problems.append(f"{len(missing_logs)} replied turns not logged after {log_wait:.0f} s")
    return {
        "acknowledged": len(acked),
        "stored_customer_messages": len(stored),
        "stored_but_not_acknowledged": unacked_stored,  # a request cut off after storing: not lost, not doubled
        "replied": len(replied),
        "turns_logged": len(logged),
        "problems": problems[:20],
        "problem_count": len(problems),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5, help=f"per customer, at most {len(QUESTIONS)}")
    parser.add_argument("--timeout", type=float, default=900, help="global limit in seconds")
    parser.add_argument("--log-wait", type=float, default=120, help="seconds to wait for the worker's turn logs")
    parser.add_argument("--forwarded-for", action="store_true", help="one X-Forwarded-For address per customer")
    parser.add_argument("--events", action="store_true", help="each customer also keeps the live-events stream open")
    parser.add_argument("--no-db-check", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not 1 <= args.customers <= 2000 or not 1 <= args.messages <= len(QUESTIONS):
        parser.error(f"--customers 1..2000, --messages 1..{len(QUESTIONS)}")
    loopback_only(args.url)

    run, elapsed = asyncio.run(load(args.url.rstrip("/"), args.customers, args.messages, args.timeout,
                                    args.forwarded_for, args.events))  # fmt: skip
    statuses = collections.Counter(str(s.status) for s in run.sent)
    ok = [s for s in run.sent if s.status == 200 and s.done]
    outcome = collections.Counter(
        "silent (a person has it)" if not s.replies else s.replies[-1]["role"] for s in run.sent if s.status == 200
    )
    figures: dict[str, Any] = {
        "machine": machine(),
        "customers": args.customers,
        "messages_per_customer": args.messages,
        "seconds": round(elapsed, 1),
        "conversation_starts": dict(collections.Counter(str(s) for s in run.starts)),
        "message_statuses": dict(statuses),
        "cancelled_at_timeout": run.cancelled,
        "events_streams": dict(collections.Counter(str(s) for s in run.events)),
        "streams_with_error_event": sum(1 for s in run.sent if s.error_events),
        "streams_cut_short": sum(1 for s in run.sent if s.status == 200 and not s.done),
        "sent_again_after_a_dropped_connection": sum(s.retries for s in run.sent),
        "reply_roles": dict(outcome),
        "ms_per_message": percentiles([s.ms for s in ok]) if ok else {},
        "messages_per_second": round(len(ok) / elapsed, 1) if elapsed else 0.0,
    }
    if not args.no_db_check:
        figures["database"] = check_database(run, args.log_wait)

    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    server_errors = sum(n for status, n in statuses.items() if status.startswith("5") or not status.isdigit())
    starts = figures["conversation_starts"].items()
    server_errors += sum(n for status, n in starts if status.startswith("5") or not status.isdigit())
    server_errors += sum(n for status, n in figures["events_streams"].items() if status.startswith("5"))
    failed = (
        server_errors
        or run.cancelled
        or figures["streams_with_error_event"]
        or figures["streams_cut_short"]
        or figures.get("database", {}).get("problem_count")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
