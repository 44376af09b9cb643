"""The two staff roles: agents work tickets; ops manage knowledge, retraining and settings."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

AGENTS = "agents"
OPS = "ops"

ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    AGENTS: [
        ("chat", "view_cannedreply"),
        ("chat", "view_conversation"),
        ("chat", "change_conversation"),
        ("chat", "view_message"),
        ("chat", "add_message"),
        ("chat", "view_ticket"),
        ("chat", "change_ticket"),
        ("knowledge", "view_entry"),
    ],
    OPS: [
        ("chat", "view_metrics"),
        ("chat", "add_cannedreply"),
        ("chat", "change_cannedreply"),
        ("chat", "delete_cannedreply"),
        ("chat", "view_cannedreply"),
        ("chat", "view_conversation"),
        ("chat", "view_message"),
        ("chat", "view_ticket"),
        ("knowledge", "view_knowledgebase"),
        ("knowledge", "change_knowledgebase"),
        ("knowledge", "add_source"),
        ("knowledge", "change_source"),
        ("knowledge", "delete_source"),
        ("knowledge", "view_source"),
        ("knowledge", "add_entry"),
        ("knowledge", "change_entry"),
        ("knowledge", "delete_entry"),
        ("knowledge", "view_entry"),
        ("knowledge", "view_example"),
        ("knowledge", "change_example"),
        ("knowledge", "delete_example"),
        ("knowledge", "view_routingversion"),
        ("knowledge", "change_routingversion"),
        ("learning", "view_turnlog"),
        ("learning", "change_turnlog"),
        ("learning", "delete_turnlog"),
        ("learning", "view_labelledexample"),
        ("learning", "change_labelledexample"),
        ("learning", "view_retrainingjob"),
        ("learning", "change_retrainingjob"),
    ],
}


def ensure_roles() -> dict[str, Group]:
    """Create the role groups with exactly their permissions (idempotent)."""
    groups = {}
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in perms]
        group.permissions.set(wanted)
        groups[name] = group
    return groups
