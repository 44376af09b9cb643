"""Settings come from the environment; a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.envvars import (
    ImproperEnvironment,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
)

ROOT = Path(__file__).resolve().parents[2]


def test_unset_variables_take_their_defaults():
    assert env_int("N", 3, {}) == 3
    assert env_bool("B", True, {}) is True
    assert env_list("L", ["a"], {}) == ["a"]
    assert env_str("S", "x", {}) == "x"


def test_values_are_parsed_by_type():
    env = {"N": "1_000", "B": "yes", "F": "0.25", "L": "a, b,,c", "C": "OpenAI"}
    assert env_int("N", 0, env) == 1000
    assert env_bool("B", False, env) is True
    assert env_float("F", 0.0, env) == 0.25
    assert env_list("L", [], env) == ["a", "b", "c"]
    assert env_choice("C", "extractive", ("extractive", "openai"), env) == "openai"


@pytest.mark.parametrize(
    ("reader", "value", "expected"),
    [
        (lambda env: env_int("PORT", 1, env), "eighty", "an integer"),
        (lambda env: env_int("PORT", 1, env, maximum=10), "11", "<= 10"),
        (lambda env: env_bool("PORT", False, env), "maybe", "true/false"),
        (lambda env: env_float("PORT", 0.1, env), "1,5", "a number"),
        (lambda env: env_choice("PORT", "a", ("a", "b"), env), "c", "one of a, b"),
        (lambda env: env_url("PORT", "", ("redis",), env), "localhost:6379", "redis://"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_was_expected(reader, value, expected):
    with pytest.raises(ImproperEnvironment) as error:
        reader({"PORT": value})
    assert error.value.name == "PORT"
    assert "PORT" in str(error.value)
    assert expected in str(error.value)


def test_secrets_can_come_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert env_str("LLM_API_KEY", "", {"LLM_API_KEY_FILE": str(secret)}) == "s3cret"


def test_a_missing_secret_file_is_an_error_naming_the_variable(tmp_path):
    with pytest.raises(ImproperEnvironment, match="LLM_API_KEY_FILE"):
        env_str("LLM_API_KEY", "", {"LLM_API_KEY_FILE": str(tmp_path / "nope")})


def _start_django(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "support.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_django_refuses_to_start_with_a_bad_setting():
    result = _start_django(CHAT_MAX_MESSAGE_CHARS="lots")
    assert result.returncode != 0
    assert "CHAT_MAX_MESSAGE_CHARS='lots' is invalid: expected an integer" in result.stderr


def test_django_refuses_an_unknown_database_scheme():
    result = _start_django(DATABASE_URL="mysql://db/x")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_production_parts_are_switched_on_by_their_urls():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['PASSWORD'], "
            "s.CELERY_BROKER_URL, s.CHROMA_URL, s.CELERY_BROKER_TRANSPORT, "
            "s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'])",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "support.settings",
            "DATABASE_URL": "postgres://u@db:5432/support",
            "DATABASE_PASSWORD": "pw",
            "CELERY_BROKER_URL": "redis://redis:6379/0",
            "CHROMA_URL": "http://chroma:8000",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "pw",
        "redis://redis:6379/0",
        "http://chroma:8000",
        "support.celery:RedisTransport",  # survives losing Redis
        "300",  # a killed worker's task comes back in five minutes, not the transport's hour
    ]


def test_learning_work_goes_to_the_learning_queue():
    """Retraining and making a fine-tuned version live (an index built with its encoder) leave the default queue
    to conversation logging and knowledge uploads when ops give learning a queue of its own."""
    learning = ("learning.tasks.run_retraining_job", "learning.tasks.activate_version_task")
    tasks = (*learning, "learning.tasks.log_turn", "knowledge.tasks.sync_source_task")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from support.celery import app; "
            f"print(*[app.amqp.router.route({{}}, name)['queue'].name for name in {tasks!r}])",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "support.settings", "LEARNING_QUEUE": "training"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["training", "training", "celery", "celery"]


def test_defaults_need_no_services_and_keep_debug_off():
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "CELERY_BROKER_URL", "CHROMA_URL"}}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, repr(s.CHROMA_URL))",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "support.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.sqlite3", "filesystem://", "''"]


def test_trusted_proxies_are_addresses_or_ranges():
    result = _start_django(TRUSTED_PROXIES="10.0.0.0/8, proxy.internal")
    assert result.returncode != 0
    assert "TRUSTED_PROXIES='proxy.internal' is invalid: expected IP addresses or CIDR ranges" in result.stderr
