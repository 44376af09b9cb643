"""docker-compose.yml is valid against the Compose Specification schema and holds the production set."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_schema():
    schema = json.loads((ROOT / "tests/data/compose.schema.json").read_text())
    jsonschema.validate(_compose(), schema)


def test_compose_runs_every_production_part_with_health_checks_and_restarts():
    services = _compose()["services"]
    assert {"postgres", "redis", "chroma", "web", "worker", "beat"} <= set(services)
    for name in ("postgres", "redis", "chroma", "web", "worker", "beat"):
        assert "healthcheck" in services[name], name
        assert services[name]["restart"] == "unless-stopped", name
    web_env = services["web"]["environment"]
    assert web_env["DATABASE_URL"].startswith("postgres://")
    assert web_env["CELERY_BROKER_URL"].startswith("redis://")
    assert web_env["CHROMA_URL"].startswith("http://")
    assert "uvicorn" in " ".join(json.loads(json.dumps(services["web"].get("command", []))) or ["uvicorn"])
    assert services["beat"]["command"][:4] == ["celery", "-A", "support", "beat"]


def test_every_variable_the_compose_file_sets_is_documented():
    documented = (ROOT / ".env.example").read_text()
    for name in _compose()["services"]["web"]["environment"]:
        assert f"{name}=" in documented or f"{name.removesuffix('_FILE')}=" in documented, name
