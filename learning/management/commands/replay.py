"""`manage.py replay QUERIES.jsonl --kb SLUG [--half first|second --seed 0]`: labelled queries as confirmed chats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.evaluation import read_queries
from knowledge.models import KnowledgeBase


class Command(BaseCommand):
    help = "Replay labelled queries ({text, faq_id}) as confirmed conversations, so that a retraining learns them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queries", type=Path)
        parser.add_argument("--kb", required=True, help="knowledge base slug (faq_id = its entries' keys)")
        parser.add_argument("--half", choices=["first", "second"], help="replay one half of the shuffled queries")
        parser.add_argument("--seed", type=int, default=0, help="shuffle seed for --half")

    def handle(self, *args: Any, **options: Any) -> None:
        from learning.replay import pick_half, replay

        kb = KnowledgeBase.objects.filter(slug=options["kb"]).first()
        if kb is None:
            raise CommandError(f"There is no knowledge base called {options['kb']!r}.")
        if not options["queries"].is_file():
            raise CommandError(f"{options['queries']} is not a file")
        try:
            queries = read_queries(options["queries"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        report = replay(kb, pick_half(queries, options["half"], options["seed"]))
        if report.skipped_labels:
            self.stderr.write(f"warning: {report.skipped_labels} queries name no entry of {kb.slug}; skipped")
        self.stdout.write(f"replayed {report.replayed} conversations ({report.answered} answered by the bot)")
