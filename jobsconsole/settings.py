"""Settings, read from the environment (see README "Configuration")."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from jobsconsole.env import (
    env_bool,
    env_days,
    env_float,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it, or set DJANGO_DEBUG=1 for local development."
        )
    # Development only: a fixed key is harmless when DEBUG is on and never used in production.
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "core",
    "accounts",
    "jobs",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight after security, before sessions and auth do any work for them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Query strings checked on every path before any view reads them (core.input).
    "core.api.middleware.InputBoundaryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jobsconsole.urls"
WSGI_APPLICATION = "jobsconsole.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")
_default_db = parse_database_url(DATABASE_URL, base_dir=BASE_DIR)
if _default_db["ENGINE"].endswith("sqlite3"):
    if _default_db["NAME"] != ":memory:":
        Path(_default_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _default_db["OPTIONS"] = {
        # Web and workers write the same file: WAL lets readers and one writer overlap, the busy
        # timeout waits for the writer instead of failing, and IMMEDIATE takes the write lock at
        # BEGIN so a transaction never has to upgrade a read lock (the cause of "database is
        # locked" that no timeout can cure).
        "timeout": env_float("JOBS_SQLITE_TIMEOUT", 30.0),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory: tests that start workers in other processes share the database.
    _default_db["TEST"] = {"NAME": _default_db["NAME"] + "-test"}
else:
    # Persistent connections: without them every ORM-broker enqueue opened a new connection
    # (~2,700/s fell to ~200/s). Health checks let a worker survive a database restart.
    _default_db["CONN_MAX_AGE"] = env_int("DJANGO_CONN_MAX_AGE", 600)
    _default_db["CONN_HEALTH_CHECKS"] = True
    # Let the worker's hot statements run as prepared statements (jobs.services
    # _execute_prepared): planning them costs more than running them. Django's own queries bind
    # on the client and are never prepared either way. Set JOBS_DB_PREPARED_STATEMENTS=0 behind
    # a connection pooler in transaction mode that cannot keep prepared statements.
    if env_bool("JOBS_DB_PREPARED_STATEMENTS", True):
        _default_db.setdefault("OPTIONS", {})["prepare_threshold"] = 5
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One date-time format on every page, with seconds and the time zone (jobsconsole/formats).
FORMAT_MODULE_PATH = ["jobsconsole.formats"]

# --- Live pages (core/static/core/live.js) ----------------------------------------------------
# How often a live region of the console (queue, job page, triage, ...) refreshes itself.
JOBS_LIVE_REFRESH_MS = env_int("JOBS_LIVE_REFRESH_MS", 3000)

# --- Static files -----------------------------------------------------------------------------
# The web process serves them itself (WhiteNoise), from what `collectstatic` gathered into
# STATIC_ROOT in the release step (Procfile): content-hashed names, cached for ever by browsers,
# with gzip copies made once at build time.
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
# The manifest storage only in production: it makes {% static %} name the hashed copies, so a page
# fails loudly when collectstatic was not run, and it cannot name anything without that run. In
# development (DEBUG, the demo's runserver) and in the tests (tests/conftest.py switches them to
# this plain storage, as pytest imports settings with DEBUG off) pages name the source files,
# which runserver, or WhiteNoise with WHITENOISE_USE_FINDERS (on with DEBUG), serves from the
# apps' static directories: no collectstatic run needed and no stale copy served.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
X_FRAME_OPTIONS = "DENY"
# JSON under /api/ (core.api.exceptions), Django's page elsewhere.
CSRF_FAILURE_VIEW = "core.api.exceptions.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsApiClient"],
    # JSON only, through the input boundary's rules (depth, NUL, surrogates, lengths).
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JsonParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # The browsable API for staff sessions only: an API key's answers are always JSON.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.api.negotiation.ApiContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Jobs console API",
    "DESCRIPTION": "Observe and recover the asynchronous jobs of the email-integration platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # OpenAPI 3.1 (JSON Schema 2020-12): `propertyNames` and `const` let the schema state the
    # rules of label keys, of JSON payloads and of each task kind's params exactly.
    "OAS_VERSION": "3.1.0",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.openapi.add_shared_components",
        "core.api.openapi.require_request_bodies",
        "jobs.api.add_openapi_links",
        "jobs.api.json_query_parameters",
    ],
    # Swagger UI and ReDoc from the installed drf-spectacular-sidecar (static files served by the
    # app), never from a CDN: the docs work offline and show the version that was tested.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No online validator badge: Swagger UI would load it from validator.swagger.io, sending it
    # the schema's address.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- Execution (django-q2) -----------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
JOBS_WORKERS = env_int("JOBS_WORKERS", 2)
# The cluster's hard limit per run; each action has its own (shorter) timeout enforced by the
# worker entry. The broker redelivers an unacknowledged message after `retry` seconds, so it
# must exceed the hard timeout (a redelivery of a finished job is a no-op anyway).
JOBS_HARD_TIMEOUT = env_int("JOBS_HARD_TIMEOUT", 900)
Q_CLUSTER = {
    "name": env_str("JOBS_QUEUE_NAME", "jobsconsole"),
    "workers": JOBS_WORKERS,
    "recycle": 1000,
    "timeout": JOBS_HARD_TIMEOUT,
    "retry": JOBS_HARD_TIMEOUT + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": -1,
    "catch_up": False,
    "queue_limit": env_int("JOBS_QUEUE_LIMIT", 50),
    "poll": env_float("JOBS_ORM_POLL", 0.1),
    "label": "Django Q2",
}
# django-q2's brokers, handing out messages first in, first out, with a lane ahead of the line
# for trigger (jobs.execution.broker).
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    Q_CLUSTER["broker_class"] = "jobs.execution.broker.LanedRedis"
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "jobs.execution.broker.OrderedORM"

JOBS_DEFAULT_MAX_ATTEMPTS = env_int("JOBS_DEFAULT_MAX_ATTEMPTS", 5)
JOBS_DEFAULT_TIMEOUT = env_int("JOBS_DEFAULT_TIMEOUT", 300)
JOBS_HEARTBEAT_SECONDS = env_float("JOBS_HEARTBEAT_SECONDS", 5.0)
# A running job whose heartbeat is older than its timeout plus this grace is a lost run.
JOBS_STALL_GRACE_SECONDS = env_float("JOBS_STALL_GRACE_SECONDS", 30.0)
# A queued job no worker picked up in this long is enqueued again (a lost broker message).
JOBS_REQUEUE_AFTER_SECONDS = env_float("JOBS_REQUEUE_AFTER_SECONDS", 120.0)
JOBS_DISPATCH_INTERVAL = env_float("JOBS_DISPATCH_INTERVAL", 0.5)
JOBS_DISPATCH_BATCH = env_int("JOBS_DISPATCH_BATCH", 500)
# How often the scheduler process looks for lost runs and unclaimed queued jobs.
JOBS_SWEEP_INTERVAL = env_float("JOBS_SWEEP_INTERVAL", 5.0)
# Sync schedules (jobs.services.schedules): how often the scheduler looks for due ones, how many
# it fires in one transaction each per look, and the interval of the mailbox_sync schedule an
# account gets with its IMAP settings (0: none).
JOBS_SCHEDULES_INTERVAL = env_float("JOBS_SCHEDULES_INTERVAL", 1.0)
JOBS_SCHEDULES_BATCH = env_int("JOBS_SCHEDULES_BATCH", 100)
JOBS_DEFAULT_SYNC_INTERVAL = env_int("JOBS_DEFAULT_SYNC_INTERVAL", 300)
# How long a worker keeps retrying to record a run's outcome while the database is unreachable
# (a restart, a failover) before it gives up and leaves the run to the sweeper.
JOBS_DB_RETRY_SECONDS = env_float("JOBS_DB_RETRY_SECONDS", 60.0)
# Workers' claims and outcomes commit without waiting for the WAL flush (PostgreSQL only; see
# jobs.execution.worker._prepare_worker_connection): a database crash can only cause a job to
# run again.
JOBS_WORKER_ASYNC_COMMIT = env_bool("JOBS_WORKER_ASYNC_COMMIT", True)
# Modules that register more actions, imported by workers and the scheduler (tests, plugins).
JOBS_EXTRA_ACTION_MODULES = env_list("JOBS_EXTRA_ACTION_MODULES", [])
# IMAP sync: seconds per connect or read, and envelopes fetched per batch (one transaction each).
JOBS_IMAP_TIMEOUT = env_float("JOBS_IMAP_TIMEOUT", 10.0)
JOBS_IMAP_BATCH_SIZE = env_int("JOBS_IMAP_BATCH_SIZE", 500)
# Bulk operations (jobs.services.bulk): jobs per batch (one transaction each); how long a
# worker's hold on an operation lasts before the scheduler hands it to another (a worker killed
# mid-operation); how long one worker runs batches before passing the operation on; the pace
# of retry and trigger when the operator gives none (jobs per second, 0: unpaced).
JOBS_BULK_BATCH_SIZE = env_int("JOBS_BULK_BATCH_SIZE", 1000)
JOBS_BULK_LEASE_SECONDS = env_float("JOBS_BULK_LEASE_SECONDS", 60.0)
JOBS_BULK_RUN_SECONDS = env_float("JOBS_BULK_RUN_SECONDS", 30.0)
JOBS_BULK_DEFAULT_RATE = env_float("JOBS_BULK_DEFAULT_RATE", 500.0)
JOBS_IDEMPOTENCY_TTL_HOURS = env_int("JOBS_IDEMPOTENCY_TTL_HOURS", 24)
# Observability (jobs.monitoring): each worker and scheduler process writes its own heartbeat
# row this often; one older than the grace is shown as gone and fails `manage.py jobs_health`.
JOBS_PROCESS_HEARTBEAT_SECONDS = env_float("JOBS_PROCESS_HEARTBEAT_SECONDS", 5.0)
JOBS_PROCESS_GRACE_SECONDS = env_float("JOBS_PROCESS_GRACE_SECONDS", 30.0)
# The scheduler rolls up closed minutes this often, each once the minute is this old (so that a
# transition stamped in it has committed).
JOBS_ROLLUP_INTERVAL = env_float("JOBS_ROLLUP_INTERVAL", 15.0)
JOBS_ROLLUP_SETTLE_SECONDS = env_float("JOBS_ROLLUP_SETTLE_SECONDS", 10.0)
# More failed and stalled jobs than this, and the scheduler counts them per account, action and
# error code every JOBS_TRIAGE_COUNT_INTERVAL seconds for the triage page and /metrics, which
# then read its counts (and say when they were taken) instead of grouping on every load.
JOBS_TRIAGE_COUNT_ABOVE = env_int("JOBS_TRIAGE_COUNT_ABOVE", 100_000)
JOBS_TRIAGE_COUNT_INTERVAL = env_float("JOBS_TRIAGE_COUNT_INTERVAL", 60.0)
# Who may read /metrics without an operator API key (comma-separated addresses).
JOBS_METRICS_ALLOWED_IPS = env_list("JOBS_METRICS_ALLOWED_IPS", [])

# --- Retention (jobs.services.retention) -----------------------------------------------------
# Days a finished job is kept, per terminal status, counted from `finished_at`; `keep` (or an
# empty value) keeps it until an operator acts. Its attempts go with it.
JOBS_RETAIN_SUCCEEDED_DAYS = env_days("JOBS_RETAIN_SUCCEEDED_DAYS", 7.0)
JOBS_RETAIN_RESOLVED_DAYS = env_days("JOBS_RETAIN_RESOLVED_DAYS", 30.0)
JOBS_RETAIN_FAILED_DAYS = env_days("JOBS_RETAIN_FAILED_DAYS", None)
JOBS_RETAIN_STALLED_DAYS = env_days("JOBS_RETAIN_STALLED_DAYS", None)
# Days an audit event is kept, counted from its creation; the events of a job that still exists
# are kept with it, whatever their age (audit events outlive the jobs they speak of).
JOBS_RETAIN_AUDIT_DAYS = env_days("JOBS_RETAIN_AUDIT_DAYS", 90.0)
# Days a provider event is kept, counted from its creation, and never while a job made from it
# exists. It is also the dedup record of the provider's push: once it is gone, a redelivery of
# that push is ingested again, so this stays well beyond any provider's redelivery window.
JOBS_RETAIN_PROVIDER_EVENTS_DAYS = env_days("JOBS_RETAIN_PROVIDER_EVENTS_DAYS", 30.0)
# The scheduler prunes in batches (one short transaction each, jobs locked with SKIP LOCKED),
# at most JOBS_PRUNE_ROWS_PER_MINUTE jobs, audit and provider events a minute, one batch per
# round of its loop so dispatching never waits behind a clean-up. 0 turns pruning off in the
# scheduler.
JOBS_PRUNE_BATCH = env_int("JOBS_PRUNE_BATCH", 500)
JOBS_PRUNE_ROWS_PER_MINUTE = env_int("JOBS_PRUNE_ROWS_PER_MINUTE", 30_000)
# Key for encrypting mailbox credentials at rest (Fernet, urlsafe base64 of 32 bytes). When unset
# it is derived from SECRET_KEY, so rotating SECRET_KEY makes stored passwords unreadable.
JOBS_CREDENTIALS_KEY = env_str("JOBS_CREDENTIALS_KEY")

LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django-q": {"level": env_str("JOBS_Q_LOG_LEVEL", "WARNING")},
    },
}
