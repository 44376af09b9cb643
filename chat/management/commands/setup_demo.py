"""`manage.py setup_demo`: demo logins and the demo knowledge base (Rodamar, ES/EN). Idempotent."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from chat.roles import ensure_roles
from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source

DEMO_DIR = Path(settings.BASE_DIR) / "demo"
DEMO_USERS = (
    # username, role group, superuser, display name
    ("admin", None, True, "Admin"),
    ("ana", "agents", False, "Ana"),
    ("olga", "ops", False, "Olga"),
)


class Command(BaseCommand):
    help = "Create demo logins (printed) and load the demo knowledge base."

    def handle(self, *args: Any, **options: Any) -> None:
        groups = ensure_roles()
        logins = self._logins()
        User = get_user_model()
        for username, group, is_superuser, first_name in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"is_staff": True, "is_superuser": is_superuser, "first_name": first_name},
            )
            if created:
                user.set_password(logins[username])
                user.save()
            if group:
                user.groups.add(groups[group])

        kb = get_or_create_knowledge_base("default", "Rodamar")
        for path in sorted(DEMO_DIR.glob("*")):
            if path.suffix in {".jsonl", ".md", ".csv", ".pdf", ".html"}:
                report = sync_source(source_for_location(kb, str(path)))
                self.stdout.write(
                    f"demo knowledge: {path.name}: {report.added} added, {report.updated} updated, "
                    f"{report.unchanged} unchanged, {len(report.issues)} issues"
                )
        self.stdout.write("\nDemo logins (admin at /admin/):")
        for username, group, _, _ in DEMO_USERS:
            self.stdout.write(f"  {username:<6} / {logins[username]:<24} {group or 'superuser'}")

    def _logins(self) -> dict[str, str]:
        """Passwords generated once per installation and kept under DATA_DIR (never a fixed default)."""
        path = Path(settings.DATA_DIR) / "demo-logins.json"
        logins: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        for username, *_ in DEMO_USERS:
            logins.setdefault(username, secrets.token_urlsafe(9))
        path.write_text(json.dumps(logins, indent=2))
        path.chmod(0o600)
        return logins
