"""`manage.py erase_customer --email X`: delete everything kept about one customer (right of erasure)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import actions


class Command(BaseCommand):
    help = "Erase one customer's conversations, turn logs, labels, learned phrasings and export rows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="")
        parser.add_argument("--ref", default="", help="the customer's id on the host site")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            customer = actions.Customer(email=options["email"], ref=options["ref"])
        except actions.LearningError as exc:
            raise CommandError(str(exc)) from exc
        result = actions.erase_customer(customer)
        self.stdout.write(
            f"erased: {result.conversations} conversations, {result.turn_logs} turn logs, "
            f"{result.labelled_examples} labels, {result.learned_phrasings} learned phrasings; "
            f"{result.exports_rewritten} exports rewritten"
        )
