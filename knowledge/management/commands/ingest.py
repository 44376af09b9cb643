"""`manage.py ingest PATH_OR_URL [...]`: the same action the admin's upload and re-sync use."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source


class Command(BaseCommand):
    help = "Ingest FAQ files, help documents, or a URL/sitemap into a knowledge base (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("locations", nargs="+", metavar="PATH_OR_URL")
        parser.add_argument("--kb", default="default", help="knowledge base slug (created if missing)")
        parser.add_argument("--name", default="", help="source name (default: the file name or URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        kb = get_or_create_knowledge_base(options["kb"])
        failed = False
        for location in options["locations"]:
            source = source_for_location(kb, location, options["name"])
            report = sync_source(source)
            self.stdout.write(
                f"{source.name}: {report.status} - added {report.added}, updated {report.updated}, "
                f"unchanged {report.unchanged}, removed {report.removed}, issues {len(report.issues)}"
            )
            for issue in report.issues:
                self.stdout.write(f"  ! {issue.location}: {issue.message}")
            failed = failed or report.status == "failed"
        if failed:
            raise SystemExit(1)
