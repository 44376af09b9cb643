"""`manage.py export_customer --email X [--out FILE]`: everything kept about one customer, as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import actions


class Command(BaseCommand):
    help = "Export one customer's conversations, turn logs and labels (right of access)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="")
        parser.add_argument("--ref", default="", help="the customer's id on the host site")
        parser.add_argument("--out", type=Path, help="write here instead of standard output")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            customer = actions.Customer(email=options["email"], ref=options["ref"])
        except actions.LearningError as exc:
            raise CommandError(str(exc)) from exc
        text = json.dumps(actions.export_customer(customer), indent=2, ensure_ascii=False)
        if options["out"]:
            options["out"].write_text(text + "\n", encoding="utf-8")
            self.stderr.write(f"written to {options['out']}")
        else:
            self.stdout.write(text)
