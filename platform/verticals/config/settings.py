"""Django settings, read from the environment (12-factor).

With no environment set, the embedded default runs: SQLite and media under `var/`, a
broker that needs no server, DEBUG on and a development secret key kept in `var/`.
Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and DEBUG=0 (see docker/).
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from verticals.config.env import env_bool, env_float, env_int, env_list, env_str
from verticals.sdk.discovery import plugin_app_paths

BASE_DIR = Path(__file__).resolve().parents[3]
VAR_DIR = Path(env_str("VERTICALS_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)

# --- secret key -------------------------------------------------------------------------
DEV_SECRET_KEY_PREFIX = "django-insecure-dev-"


def _development_secret_key() -> str:
    path = VAR_DIR / "dev_secret_key"
    if not path.exists():
        path.write_text(DEV_SECRET_KEY_PREFIX + secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or _development_secret_key()


def secret_key_problem(key: str) -> str | None:
    """Why `key` is unfit for production, or None (mirrors Django's security.W009)."""
    if key.startswith("django-insecure"):
        return "it is a development key"
    if len(key) < 50 or len(set(key)) < 5:
        return "it is shorter than 50 characters or has fewer than 5 distinct characters"
    return None


if not DEBUG and (problem := secret_key_problem(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"DEBUG is off but SECRET_KEY is unfit for production: {problem}. "
        "Set SECRET_KEY to a random value of at least 50 characters, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(64))'`."
    )

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- applications -----------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "verticals.tenancy",
    "verticals.jobs",
    "verticals.registry",
    "verticals.serving",
    "verticals.billing",
    "verticals.sdk",
    "verticals.api",
    "verticals.portal",
    # Domain plugins: every installed package of the `verticals.plugins` entry-point group.
    *plugin_app_paths(),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Path and query parameters and cookies holding text no database holds (NUL): 400, naming them.
    "verticals.api.inputs.UnstorableInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "verticals.tenancy.middleware.CallerMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "verticals.config.urls"
WSGI_APPLICATION = "verticals.config.wsgi.application"
ASGI_APPLICATION = "verticals.config.asgi.application"

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
                "verticals.portal.context.portal",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'verticals.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to one file at once: WAL, IMMEDIATE transactions
    # and a busy timeout keep progress updates from meeting "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests' database is a file, so that worker processes started by tests can open it too
    # (one per test run: runs side by side do not share it).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_verticals_{os.getpid()}.sqlite3")}
# PostgreSQL enforces tenancy a second time with row-level security (docs/design.md, "Two walls"):
# DATABASE_URL names the owner (migrations run as it); the application logs in as
# DATABASE_APP_USER, a role that owns no table and lacks BYPASSRLS (`migrate` creates it when
# missing and grants it what it needs). DATABASE_RLS=0 connects as DATABASE_URL's user with
# Django's own backend: only for measuring what RLS costs, with a user that bypasses RLS.
DATABASE_RLS = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_RLS", True
)
if DATABASE_RLS:
    DATABASES["default"]["ENGINE"] = "verticals.tenancy.backend"
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "app_user": env_str("DATABASE_APP_USER") or "verticals_app",
        "app_password": env_str("DATABASE_APP_PASSWORD") or "",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth -------------------------------------------------------------------------------
AUTH_USER_MODEL = "tenancy.User"
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:projects"
LOGOUT_REDIRECT_URL = "portal:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Failed sign-ins and failed API key lookups are throttled (verticals.tenancy.throttle): counted in
# the database per fixed window, refused until the window ends once a limit is reached.
AUTHENTICATION_BACKENDS = [
    "verticals.tenancy.throttle.LoginThrottleBackend",  # refuses while over a limit; signs no one in
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_THROTTLE_WINDOW_SECONDS = env_int("AUTH_THROTTLE_WINDOW_SECONDS", 900)
AUTH_THROTTLE_ACCOUNT_FAILURES = env_int(
    "AUTH_THROTTLE_ACCOUNT_FAILURES", 5
)  # per account (or API key) and window
AUTH_THROTTLE_ADDRESS_FAILURES = env_int(
    "AUTH_THROTTLE_ADDRESS_FAILURES", 20
)  # failed sign-ins per address and window
AUTH_THROTTLE_KEY_FAILURES = env_int(
    "AUTH_THROTTLE_KEY_FAILURES", 20
)  # invalid API keys per address and window
# Trusted proxies in front of the web processes that append the caller to X-Forwarded-For (0: none,
# the caller is REMOTE_ADDR). Set it only behind such proxies: otherwise callers choose their address.
AUTH_THROTTLE_PROXIES = env_int("AUTH_THROTTLE_PROXIES", 0)

# --- i18n / time ------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- files ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or VAR_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns at start-up when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or VAR_DIR / "media")
STORAGES = {
    # S3-compatible storage in production: set STORAGE_BACKEND to its storage class.
    "default": {
        "BACKEND": env_str("STORAGE_BACKEND") or "django.core.files.storage.FileSystemStorage"
    },
    # Tenant files (datasets, model weights, predictions): outside MEDIA_ROOT, so never served
    # as media; downloads go through the API, which checks the tenant and the role.
    "artifacts": {
        "BACKEND": env_str("ARTIFACT_STORAGE_BACKEND")
        or "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {}
        if env_str("ARTIFACT_STORAGE_BACKEND")
        else {"location": str(VAR_DIR / "artifacts")},
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)

# --- email ------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "Verticals <no-reply@localhost>"

# --- security (production) --------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    # Health checks from the orchestrator come over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# --- celery -----------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
# Work is routed to train / optimize / inference / default (a job goes to its kind's queue, so
# GPU and CPU pools can be sized apart); anything unrouted goes to default.
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A job's message is acknowledged when the job ends; a worker that dies mid-job leaves it to be
# redelivered (where the broker can) and its job to the reaper. One message at a time per process.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # No message waits on a countdown or ETA (webhook retries are swept by beat), so an
    # unacknowledged message is redelivered only after a worker was lost.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
    }

# --- jobs -------------------------------------------------------------------------------
# Jobs a tenant may have running (or handed to a worker) at once; the rest wait in order. 0: no limit.
JOBS_MAX_RUNNING_PER_TENANT = env_int("JOBS_MAX_RUNNING_PER_TENANT", 4)
JOBS_HEARTBEAT_SECONDS = env_float(
    "JOBS_HEARTBEAT_SECONDS", 5.0
)  # 0 turns the heartbeat thread off
JOBS_HEARTBEAT_TTL = env_float("JOBS_HEARTBEAT_TTL", 60.0)  # silence after which the reaper acts
JOBS_REAPER_SECONDS = env_float("JOBS_REAPER_SECONDS", 15.0)
JOBS_REDISPATCH_SECONDS = env_float(
    "JOBS_REDISPATCH_SECONDS", 600.0
)  # resend a start never picked up
JOBS_PROGRESS_SECONDS = env_float("JOBS_PROGRESS_SECONDS", 0.25)  # progress rows at most this often
JOBS_CANCEL_POLL_SECONDS = env_float("JOBS_CANCEL_POLL_SECONDS", 0.5)
# A running job that has not stopped this long after a cancel is ended as cancelled by the reaper.
JOBS_CANCEL_GRACE_SECONDS = env_float("JOBS_CANCEL_GRACE_SECONDS", 30.0)
# Seconds a run may take unless its kind says otherwise; the reaper fails it after that. 0: no limit.
JOBS_TIME_LIMIT = env_float("JOBS_TIME_LIMIT", 86400.0)
JOBS_LOG_LINE_MAX = 2000
JOBS_SCRATCH_DIR = Path(env_str("JOBS_SCRATCH_DIR") or VAR_DIR / "scratch")
# Extra modules whose runners register when Django starts (plugins register theirs through the SDK).
JOBS_RUNNER_MODULES = env_list("JOBS_RUNNER_MODULES", [])
JOBS_SSE_POLL_SECONDS = env_float("JOBS_SSE_POLL_SECONDS", 0.5)
JOBS_SSE_KEEPALIVE_SECONDS = env_float("JOBS_SSE_KEEPALIVE_SECONDS", 15.0)
JOBS_SSE_MAX_SECONDS = env_float(
    "JOBS_SSE_MAX_SECONDS", 3600.0
)  # then the client reconnects with Last-Event-ID
JOBS_WEBHOOK_ALLOW_PRIVATE = env_bool(
    "JOBS_WEBHOOK_ALLOW_PRIVATE", DEBUG
)  # loopback / private targets
JOBS_WEBHOOK_TIMEOUT = env_float("JOBS_WEBHOOK_TIMEOUT", 10.0)
JOBS_WEBHOOK_PROGRESS_SECONDS = env_float("JOBS_WEBHOOK_PROGRESS_SECONDS", 10.0)
JOBS_WEBHOOK_BACKOFF = env_list("JOBS_WEBHOOK_BACKOFF", ["5", "30", "120", "600", "1800", "3600"])
JOBS_WEBHOOK_RETRY_SECONDS = env_float("JOBS_WEBHOOK_RETRY_SECONDS", 5.0)
# The platform's own upkeep (reaper, webhooks) has a queue of its own, served by a worker that
# runs no jobs: long jobs filling every slot cannot hold back the reaper or a webhook.
CELERY_TASK_ROUTES = {
    "verticals.jobs.reap": {"queue": "system"},
    "verticals.jobs.retry_webhooks": {"queue": "system"},
    "verticals.jobs.deliver_webhook": {"queue": "system"},
    "verticals.billing.*": {"queue": "system"},
    "verticals.tenancy.*": {"queue": "system"},
}
CELERY_BEAT_SCHEDULE = {
    "jobs-reaper": {"task": "verticals.jobs.reap", "schedule": JOBS_REAPER_SECONDS},
    "jobs-webhook-retries": {
        "task": "verticals.jobs.retry_webhooks",
        "schedule": JOBS_WEBHOOK_RETRY_SECONDS,
    },
    # Closing is idempotent (one invoice per tenant and period): hourly issues each soon after its period ends.
    "billing-close-period": {
        "task": "verticals.billing.close_period",
        "schedule": env_float("BILLING_CLOSE_SECONDS", 3600.0),
    },
    "billing-storage-snapshot": {"task": "verticals.billing.snapshot_storage", "schedule": 86400.0},
    "billing-prune-rate-windows": {
        "task": "verticals.billing.prune_rate_windows",
        "schedule": 300.0,
    },
    "tenancy-prune-auth-failures": {
        "task": "verticals.tenancy.prune_auth_failures",
        "schedule": 3600.0,
    },
}

# --- billing ----------------------------------------------------------------------------
# Off only to measure what metering costs (bench/billing.py): nothing is recorded or limited.
BILLING_METERING = env_bool("BILLING_METERING", True)
# Each process remembers the tenants' plans (read on every metered call) and checks this often
# whether plans, prices, subscriptions or contracts changed anywhere (0: read the plan every call).
BILLING_PLAN_CACHE_SECONDS = env_float("BILLING_PLAN_CACHE_SECONDS", 2.0)
# A served call's usage events go to a journal on local disk and reach the ledger in batches this
# often (billing.spool; 1 s: one statement a second per web process); 0 writes each call's
# events before it answers.
BILLING_LEDGER_FLUSH_SECONDS = env_float("BILLING_LEDGER_FLUSH_SECONDS", 1.0)
# A period is closed this long after it ends, so that usage on its way (served calls' spooled
# events, a job's last seconds) is on its invoice.
BILLING_CLOSE_GRACE_SECONDS = env_float("BILLING_CLOSE_GRACE_SECONDS", 300.0)
# How many ended periods back a close looks for invoices still to issue.
BILLING_CLOSE_LOOKBACK = env_int("BILLING_CLOSE_LOOKBACK", 3)
# Events of external sources sent this long after their time are refused (their period may be closed).
BILLING_EVENT_MAX_AGE_DAYS = env_int("BILLING_EVENT_MAX_AGE_DAYS", 30)
# The plan a channel partner's new tenant goes on when the partner names none ("": no plan; a code
# that names no plan offered: no subscription either).
BILLING_DEFAULT_PLAN = env_str("BILLING_DEFAULT_PLAN", "free")

# --- registry, serving, plugins ---------------------------------------------------------
# Nothing downloads weights at run time (models come from the registry), and the Hugging Face
# libraries keep their progress bars and load reports out of job logs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Largest upload (dataset file or model archive), checked before the body is read.
REGISTRY_MAX_UPLOAD_BYTES = env_int("REGISTRY_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024)
# An archive (image dataset or model) may expand to at most this many bytes: the members' declared
# sizes are checked before any is read, the bytes read while they are copied (zip bombs).
REGISTRY_MAX_EXTRACTED_BYTES = env_int("REGISTRY_MAX_EXTRACTED_BYTES", 8 * 1024 * 1024 * 1024)
# Files an archive may list (checked from its end record, before the listing is parsed).
REGISTRY_MAX_ARCHIVE_FILES = env_int("REGISTRY_MAX_ARCHIVE_FILES", 100_000)
# Text uploads are read a line at a time: the longest line (or CSV record), its line break included.
REGISTRY_MAX_LINE_BYTES = env_int("REGISTRY_MAX_LINE_BYTES", 1024 * 1024)
# Examples one dataset upload may hold (the split keeps 12 bytes of each in memory, never the inputs).
REGISTRY_MAX_ROWS = env_int("REGISTRY_MAX_ROWS", 2_000_000)
# Distinct labels one dataset upload may hold (and labels an imported model may predict).
REGISTRY_MAX_LABELS = env_int("REGISTRY_MAX_LABELS", 10_000)
# An imported model is loaded once before it is stored, in a process of its own (never the web
# process): the memory that load may take above the process's idle size, and how long it may take.
REGISTRY_IMPORT_LOAD_MEMORY_BYTES = env_int(
    "REGISTRY_IMPORT_LOAD_MEMORY_BYTES", 8 * 1024 * 1024 * 1024
)
REGISTRY_IMPORT_LOAD_SECONDS = env_float("REGISTRY_IMPORT_LOAD_SECONDS", 600.0)
# Where workers and web processes keep local copies of stored datasets and models.
REGISTRY_CACHE_DIR = Path(env_str("REGISTRY_CACHE_DIR") or VAR_DIR / "cache")
# Loaded models kept in memory per process (least recently used first out), in bytes.
SERVING_CACHE_BYTES = env_int("SERVING_CACHE_BYTES", 2 * 1024 * 1024 * 1024)
# Largest body of a predict call (base64 images count here); larger ones are refused with 413.
SERVING_MAX_BODY_BYTES = env_int("SERVING_MAX_BODY_BYTES", 32 * 1024 * 1024)
# Pixels of one image of a predict call, and of all the images of one call, read from their
# headers before any is decoded (a decoded pixel takes 4 bytes while it is decoded).
SERVING_MAX_IMAGE_PIXELS = env_int("SERVING_MAX_IMAGE_PIXELS", 40_000_000)
SERVING_MAX_REQUEST_PIXELS = env_int("SERVING_MAX_REQUEST_PIXELS", 64_000_000)
# How long a predict call waits for others to join its batch (milliseconds).
SERVING_BATCH_WAIT_MS = env_float("SERVING_BATCH_WAIT_MS", 2.0)
# Torch threads per process (0: torch's default, one per core).
TORCH_THREADS = env_int("TORCH_THREADS", 0)
# Where training runs: auto (a GPU when the worker has one), or cpu.
TRAIN_DEVICE = env_str("TRAIN_DEVICE") or "auto"
# A train job stores its checkpoint at most this often (seconds; the first one always).
TRAIN_CHECKPOINT_SECONDS = env_float("TRAIN_CHECKPOINT_SECONDS", 60.0)
PLUGINS_DISABLED_TASKS = env_list("PLUGINS_DISABLED_TASKS", [])

# --- API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "verticals.api.auth.ApiKeyAuthentication",
        "verticals.api.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["verticals.api.permissions.TenantActionPermission"],
    "DEFAULT_PAGINATION_CLASS": "verticals.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # Bodies are JSON (what the document describes); the upload routes name multipart themselves.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "verticals.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "verticals.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # No OPTIONS metadata: it would describe writable fields by building querysets outside
    # any permission check, and no browser client needs CORS preflights here.
    "DEFAULT_METADATA_CLASS": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Verticals API",
    "DESCRIPTION": "Tenants, projects, members, API keys, jobs (with a server-sent event stream and signed "
    "webhooks) and the partner console. "
    "Authenticate with `Authorization: Bearer vk_live_...`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- platform ---------------------------------------------------------------------------
PLATFORM_NAME = env_str("PLATFORM_NAME") or "Verticals"
# Where users reach the portal: links in emails (invitations) start with it.
PORTAL_BASE_URL = (env_str("PORTAL_BASE_URL") or "http://localhost:8000").rstrip("/")
# How often last_used_at of an API key is written (seconds): not on every request.
API_KEY_LAST_USED_RESOLUTION = 60

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
