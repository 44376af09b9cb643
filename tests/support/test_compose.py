"""docker-compose.yml is valid against the Compose Specification schema and holds the production set."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.processes import stop

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


# --- healthchecks, run as compose runs them -------------------------------------------------------
def _command(service: str) -> list[str]:
    test = _compose()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form: no shell, no tools the slim image lacks"
    return [sys.executable if test[1] == "python" else test[1], *test[2:]]


def _app_environment(data: Path) -> dict[str, str]:
    """The web service's environment as compose resolves it (defaults), on this machine's parts."""
    resolved = {}
    for name, value in _compose()["services"]["web"]["environment"].items():
        match = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
        resolved[name] = match.group(1) if match else str(value)
    for name in ("SECRET_KEY_FILE", "DATABASE_PASSWORD_FILE", "LLM_API_KEY_FILE"):
        resolved.pop(name)  # the secret files live in the container
    for name in ("CELERY_BROKER_URL", "CACHE_URL", "CHROMA_URL"):
        resolved.pop(name)  # the defaults: nothing else has to run for /healthz
    resolved.update(
        DATABASE_URL=f"sqlite:///{data / 'db.sqlite3'}",
        DATA_DIR=str(data),
        SECRET_KEY="compose-test",
        LOG_FORMAT="text",
    )
    base = {k: v for k, v in os.environ.items() if k not in {"CHROMA_URL", "CACHE_URL", "CELERY_BROKER_URL"}}
    return {**base, "DJANGO_SETTINGS_MODULE": "support.settings", **resolved}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_web_healthcheck_passes_with_composes_own_allowed_hosts(tmp_path):
    env = _app_environment(tmp_path)
    assert env["ALLOWED_HOSTS"] == "localhost"  # compose's default, which refuses Host: 127.0.0.1
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, check=True, timeout=300)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "support.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, "uvicorn exited"
            time.sleep(0.2)
        check = subprocess.run(_command("web"), env={**env, "PORT": str(port)}, capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr.decode()[-2000:]
        with pytest.raises(urllib.error.HTTPError) as refused:  # what the old healthcheck asked: 400, never healthy
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert refused.value.code == 400
    finally:
        stop(server)


def test_the_beat_healthcheck_needs_no_pgrep_and_tells_whether_beat_runs(tmp_path):
    command = _command("beat")
    assert not {"pgrep", "pidof", "ps"} & set(" ".join(command).replace(";", " ").split())
    env = _app_environment(tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, check=True, timeout=300)
    beat = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "support", "beat", "--loglevel", "WARNING",
         "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(3)
        assert beat.poll() is None, "beat did not start"
        assert subprocess.run(command, timeout=30).returncode == 0
    finally:
        stop(beat)
    if shutil.which("unshare") and os.geteuid() == 0:  # a process namespace of its own, with no beat in it
        alone = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", *command], timeout=30)
        assert alone.returncode == 1


def test_postgres_has_room_for_every_process_pool():
    services = _compose()["services"]
    max_connections = int(
        services["postgres"]["command"][services["postgres"]["command"].index("-c") + 1].split("=")[1]
    )
    web = services["web"]["command"]
    web_processes = int(web[web.index("--workers") + 1])
    pool = int(services["web"]["environment"]["DATABASE_POOL_MAX_SIZE"])
    worker = services["worker"]["command"]
    worker_processes = int(worker[worker.index("--concurrency") + 1]) + 1  # the pool's processes and the main one
    # a worker process runs one task, plus a retraining job's heartbeat; beat one; migrate and manage.py a few
    needed = web_processes * pool + worker_processes * 2 + 1 + 10
    assert needed <= max_connections


# --- .dockerignore: what `COPY . .` leaves out ------------------------------------------------------
def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            verdict = not negated
    return verdict


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        "secrets/secret_key",
        "secrets/postgres_password",
        "var/db.sqlite3",
        "var/secret_key",
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        ".env.production",
        "chat/__pycache__/api.cpython-311.pyc",
        "models/qwen.gguf",
    ],
)
def test_the_image_never_gets_secrets_data_or_environments(path):
    assert _ignored(path, _dockerignore())


def test_the_image_gets_every_tracked_file_it_runs():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    left_out = [path for path in tracked if _ignored(path, _dockerignore())]
    assert all(path in (".gitignore",) or path.startswith(".ci/") for path in left_out), left_out
    for needed in (
        "manage.py",
        "requirements.lock",
        "support/settings.py",
        "chat/static/chat/widget.js",
        ".env.example",
    ):
        assert not _ignored(needed, _dockerignore())
