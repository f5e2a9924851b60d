"""Django settings: one module, configured by environment variables and a TOML file.

See the README's configuration reference for every variable. ``SERVICEDESK_ENV`` selects
``development`` (the default: SQLite under ``var/``, a generated secret key, DEBUG on) or
``production`` (SECRET_KEY, ALLOWED_HOSTS and SITE_URL required, DEBUG off, secure cookies).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from .config import MailboxConfig, load_mailboxes
from .env import env_bool, env_int, env_list, env_networks, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SERVICEDESK_VAR_DIR", str(BASE_DIR / "var")))

ENVIRONMENT = env_str("SERVICEDESK_ENV", "development")
if ENVIRONMENT not in {"development", "production"}:
    raise ImproperlyConfigured("SERVICEDESK_ENV must be 'development' or 'production'.")
PRODUCTION = ENVIRONMENT == "production"
DEBUG = env_bool("DEBUG", not PRODUCTION)


def _local_secret_key() -> str:
    """A per-checkout key kept under var/, so sessions survive restarts of `make run`."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = (
    env_secret("SECRET_KEY")
    if PRODUCTION
    else env_secret("SECRET_KEY", "") or (_local_secret_key())
)

SITE_URL = env_str("SITE_URL") if PRODUCTION else env_str("SITE_URL", "http://127.0.0.1:8000")
SITE_URL = SITE_URL.rstrip("/")
_site = urlsplit(SITE_URL)
if _site.scheme not in {"http", "https"} or not _site.hostname:
    raise ImproperlyConfigured(f"SITE_URL must be an absolute http(s) URL, not {SITE_URL!r}.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [_site.hostname] if PRODUCTION else ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [f"{_site.scheme}://{_site.netloc}"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "anymail",
    "accounts",
    "projects",
    "issues",
    "mailroom",
    "notifications",
    "saved_replies",
    "rest_framework",
    "drf_spectacular",
    "api",
    "webhooks",
    "sla",
    "satisfaction",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise, which answers static files itself: everything else is private.
    "servicedesk.http.PrivateCacheMiddleware",
    # Before anything reads the database: the request's statements run under its time limit.
    "servicedesk.statement_timeout.StatementTimeoutMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's Accept-Language (or the language cookie) for everyone; for a signed-in
    # person their profile's language wins (accounts.middleware.user_language, after auth).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.user_language",
    "accounts.middleware.sign_in_limit_status",
    "projects.middleware.redirect_renamed",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy (django-csp): scripts only from our own files — no inline script, no
# event-handler attributes, no eval — so injected markup cannot run. Inline *styles* stay
# allowed (label colours); images from our origin and data: only, so a customer's HTML email
# cannot make the team's browsers call tracking pixels.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "servicedesk.urls"
WSGI_APPLICATION = "servicedesk.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# --- Database --------------------------------------------------------------------------------
# SQLite under var/ is the embedded default; DATABASE_URL=postgres://… uses psycopg 3.
_default_db = f"sqlite:///{VAR_DIR / 'servicedesk.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", _default_db), conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Web, worker and beat share the file: WAL lets readers run beside one writer, IMMEDIATE
    # transactions take the write lock up front instead of failing mid-transaction.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("OPTIONS", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# PostgreSQL: the longest a statement of a web request may run (ms; 0: no limit). Set per
# request by servicedesk.statement_timeout, so workers, beat and migrations are not limited.
SERVICEDESK_DB_STATEMENT_TIMEOUT_MS = env_int("SERVICEDESK_DB_STATEMENT_TIMEOUT_MS", 30_000)

# --- Celery ----------------------------------------------------------------------------------
# With REDIS_URL the broker is Redis; without it, kombu's filesystem transport under var/ so that
# `make run` needs no external service.
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "visibility_timeout": 3600,
        "queue_order_strategy": "priority",  # see CELERY_TASK_ROUTES
    }
else:
    _queue_dir = VAR_DIR / "celery" / "queue"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    (VAR_DIR / "celery" / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost//"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "store_processed": False,
        # Its exchange tables too (by default ./control, wherever the process was started).
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran, so a worker killed mid-task leaves it to be redelivered.
CELERY_TASK_ACKS_LATE = True
# Celery closes every database connection before and after each task unless told to reuse
# them: a new PostgreSQL backend per task (fork, authentication, cold catalogue caches) was
# about 2 ms of PostgreSQL's CPU per inbound email. Reused; servicedesk.celery closes one that
# failed or is older than DATABASE_CONN_MAX_AGE before each task, as Django does per request,
# and Celery still closes them after this many tasks.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# --- Cache (rate limits and locks use Redis when there is one) ---------------------------------
REDIS_CACHE_URL = env_str("REDIS_CACHE_URL", REDIS_URL)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_CACHE_URL}
        if REDIS_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Email -----------------------------------------------------------------------------------
# Django's standard EMAIL_* settings. In development without EMAIL_HOST, outbound mail is written
# as files under var/mail/ (one .log per connection) so it can be read without any server.
_email_host_set = "EMAIL_HOST" in os.environ
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive.")
_default_backend = (
    "django.core.mail.backends.smtp.EmailBackend"
    if _email_host_set or PRODUCTION
    else "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", _default_backend)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
# An IP address or "localhost" is no mail domain: development mail comes from the dev one.
_mail_domain = (
    "servicedesk.localhost"
    if _site.hostname == "localhost"
    or _site.hostname.replace(".", "").isdigit()
    or ":" in _site.hostname
    else _site.hostname
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"support@{_mail_domain}")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
# django-anymail: ANYMAIL_* variables are passed through (e.g. ANYMAIL_MAILGUN_API_KEY).
# Each may come from a file instead: ANYMAIL_MAILGUN_API_KEY_FILE=/run/secrets/mailgun.
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): env_secret(name)
    for name in {n.removesuffix("_FILE") for n in os.environ if n.startswith("ANYMAIL_")}
}
# The ESPs whose inbound webhook is routed under /-/anymail/ (comma-separated, e.g. "postmark");
# none by default, and never their tracking webhooks (nothing consumes them). See
# mailroom/webhooks.py; in production ANYMAIL_WEBHOOK_SECRET is then required.
SERVICEDESK_INBOUND_ESPS = [esp.lower() for esp in env_list("SERVICEDESK_INBOUND_ESPS", [])]

# --- Service Desk ----------------------------------------------------------------------------
SERVICEDESK_CONFIG = env_str("SERVICEDESK_CONFIG", "")
SERVICEDESK_MAILBOXES = load_mailboxes(SERVICEDESK_CONFIG or None)
if "incoming_email" not in SERVICEDESK_MAILBOXES and not PRODUCTION:
    # Development without a mailbox: an address-only incoming mailbox, so that mail sent to
    # `manage.py smtpd` (started by `make run`) or piped to `receive_email` routes to projects.
    SERVICEDESK_MAILBOXES["incoming_email"] = MailboxConfig(
        name="incoming_email",
        enabled=True,
        address=env_str("SERVICEDESK_DEV_ADDRESS", "incoming+%{key}@servicedesk.localhost"),
        inbox_method="none",
    )
# Largest email accepted (bytes); larger ones are recorded and rejected as "too large".
SERVICEDESK_MAX_EMAIL_SIZE = env_int("SERVICEDESK_MAX_EMAIL_SIZE", 25 * 1024 * 1024)


def _env_seconds(name: str, default: float) -> float:
    value = env_str(name, str(default))
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {value!r}.") from None


# CPU seconds one inbound email may spend in the optional stages of parsing (HTML to Markdown,
# reply trimming); past them the email is read as plain text and its issue says so.
SERVICEDESK_PARSE_BUDGET_SECONDS = _env_seconds("SERVICEDESK_PARSE_BUDGET_SECONDS", 2.0)
# CPU seconds one text may take to render as Markdown; past them it is shown as escaped text.
SERVICEDESK_MARKDOWN_BUDGET_SECONDS = _env_seconds("SERVICEDESK_MARKDOWN_BUDGET_SECONDS", 0.75)
# New issues one sender may open in one project per minute (0: no limit).
SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE = env_int("SERVICEDESK_NEW_ISSUES_PER_MINUTE", 10)
SERVICEDESK_MAX_PARTICIPANTS = env_int("SERVICEDESK_MAX_PARTICIPANTS", 10)
# Files stored per email; the rest stay in the raw email (the ledger) and the issue says so.
SERVICEDESK_MAX_ATTACHMENTS_PER_EMAIL = env_int("SERVICEDESK_MAX_ATTACHMENTS_PER_EMAIL", 100)
# No thank-you, new-participant or "[Rejected]" email when our receiving mail server's
# Authentication-Results header says the From domain failed DMARC, SPF or DKIM: the sender is
# probably forged, and answering would make us a relay for whatever the subject says. Only
# headers from these authserv-ids are believed (comma-separated; a name also covers its
# subdomains); empty: the domains of the configured mailbox addresses.
SERVICEDESK_AUTO_REPLY_NEEDS_AUTH = env_bool("SERVICEDESK_AUTO_REPLY_NEEDS_AUTH", True)
SERVICEDESK_TRUSTED_AUTHSERV_IDS = env_list("SERVICEDESK_TRUSTED_AUTHSERV_IDS", [])
# After "regenerate address" the old default address keeps routing for this many hours, so
# mail already on its way (and customers' saved address) is not rejected at once; 0: never.
SERVICEDESK_ADDRESS_GRACE_HOURS = env_int("SERVICEDESK_ADDRESS_GRACE_HOURS", 24)
# An error of ours is retried with exponential backoff up to this many attempts.
SERVICEDESK_INBOUND_MAX_ATTEMPTS = env_int("SERVICEDESK_INBOUND_MAX_ATTEMPTS", 5)
# A row left in "processing" this long (a worker died) is re-queued by the sweeper.
SERVICEDESK_INBOUND_STUCK_AFTER = env_int("SERVICEDESK_INBOUND_STUCK_AFTER", 120)
SERVICEDESK_INBOUND_SWEEP_INTERVAL = env_int("SERVICEDESK_INBOUND_SWEEP_INTERVAL", 30)
# Emails per processing task: processed in one transaction, plain new issues written in bulk.
# A batch costs the same queries whatever its size: 100 (one IMAP fetch) rather than 25 took
# the all-in CPU per email of bench/ingest.py from 6.5 to 4.4 ms; thank-yous still leave
# within 1.3 s of their issue.
SERVICEDESK_INBOUND_TASK_BATCH = env_int("SERVICEDESK_INBOUND_TASK_BATCH", 100)
# How long one poll task keeps a mailbox (IDLE loop) before handing over to the next.
SERVICEDESK_IMAP_LEASE = env_int("SERVICEDESK_IMAP_LEASE", 300)
SERVICEDESK_IMAP_POLL_INTERVAL = env_int("SERVICEDESK_IMAP_POLL_INTERVAL", 15)
SERVICEDESK_IMAP_BATCH = env_int("SERVICEDESK_IMAP_BATCH", 100)
# Longest IDLE before a fallback SEARCH (seconds): bounds the delay of a message whose EXISTS
# notification was lost in the IDLE handshake.
SERVICEDESK_IMAP_RECHECK = env_int("SERVICEDESK_IMAP_RECHECK", 5)
# The poller lock expires this long after its holder stopped renewing it (died); 0: the
# mailbox's idle_timeout + 60 s.
SERVICEDESK_IMAP_LOCK_TTL = env_int("SERVICEDESK_IMAP_LOCK_TTL", 0)
# Microsoft Graph mailboxes: messages listed per page ($top), the timeout of one HTTP call
# (seconds), the longest Retry-After waited out in place (longer: the pass ends and the
# poller waits before the next), and how many throttled answers in a row one call accepts.
SERVICEDESK_GRAPH_PAGE_SIZE = env_int("SERVICEDESK_GRAPH_PAGE_SIZE", 25)
SERVICEDESK_GRAPH_TIMEOUT = env_int("SERVICEDESK_GRAPH_TIMEOUT", 30)
SERVICEDESK_GRAPH_MAX_RETRY_WAIT = env_int("SERVICEDESK_GRAPH_MAX_RETRY_WAIT", 60)
SERVICEDESK_GRAPH_MAX_ATTEMPTS = env_int("SERVICEDESK_GRAPH_MAX_ATTEMPTS", 6)
# Project pages show a banner when a polled mailbox (IMAP or Graph) has errors and no
# successful fetch for longer than this (minutes).
SERVICEDESK_MAILBOX_ALERT_MINUTES = env_int("SERVICEDESK_MAILBOX_ALERT_MINUTES", 10)
SERVICEDESK_SMTPD_PORT = env_int("SERVICEDESK_SMTPD_PORT", 2525)
# Instance-wide texts for the %{SYSTEM_HEADER}, %{SYSTEM_FOOTER}, %{ADDITIONAL_TEXT} placeholders.
SERVICEDESK_EMAIL_HEADER = env_str("SERVICEDESK_EMAIL_HEADER", "")
SERVICEDESK_EMAIL_FOOTER = env_str("SERVICEDESK_EMAIL_FOOTER", "")
SERVICEDESK_EMAIL_ADDITIONAL_TEXT = env_str("SERVICEDESK_EMAIL_ADDITIONAL_TEXT", "")
# A temporary sending failure is retried with backoff up to this many attempts.
SERVICEDESK_OUTBOUND_MAX_ATTEMPTS = env_int("SERVICEDESK_OUTBOUND_MAX_ATTEMPTS", 8)
# An email left "sending" this long (its worker died mid-send) is handed out again by the
# sweeper (seconds). Delivery is therefore at least once; see issues/outbox.py.
SERVICEDESK_OUTBOUND_STUCK_AFTER = env_int("SERVICEDESK_OUTBOUND_STUCK_AFTER", 600)
# Sign-in attempts per account and client address per window (seconds); five times as many
# per address. Over it, every sign-in form (ours and the admin's) answers 429 until the window
# ends, without checking the password (accounts/signin_limit.py).
SERVICEDESK_LOGIN_ATTEMPTS = env_int("SERVICEDESK_LOGIN_ATTEMPTS", 10)
SERVICEDESK_LOGIN_WINDOW = env_int("SERVICEDESK_LOGIN_WINDOW", 300)
# Password reset requests per client address and per account per window (seconds): the
# emails cost us and annoy their readers (accounts/views.py).
SERVICEDESK_PASSWORD_RESET_ATTEMPTS = env_int("SERVICEDESK_PASSWORD_RESET_ATTEMPTS", 5)
SERVICEDESK_PASSWORD_RESET_WINDOW = env_int("SERVICEDESK_PASSWORD_RESET_WINDOW", 3600)
# How long links in password reset, invitation and email confirmation emails work (seconds;
# Django's PASSWORD_RESET_TIMEOUT, three days by default).
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600)
# Anyone may create an account at /-/signup/ (off: admins create and invite people).
SERVICEDESK_SIGNUP_ENABLED = env_bool("SERVICEDESK_SIGNUP_ENABLED", False)
# Who creates top-level groups: "admins" (instance admins) or "everyone" signed in.
SERVICEDESK_TOP_LEVEL_GROUPS = env_str("SERVICEDESK_TOP_LEVEL_GROUPS", "admins")
if SERVICEDESK_TOP_LEVEL_GROUPS not in ("admins", "everyone"):
    raise ImproperlyConfigured(
        f"SERVICEDESK_TOP_LEVEL_GROUPS must be 'admins' or 'everyone', not "
        f"{SERVICEDESK_TOP_LEVEL_GROUPS!r}."
    )
# Reverse proxies (IP addresses or CIDR networks) whose X-Forwarded-For is believed: the
# client's address is then the right-most one in it that is not itself a trusted proxy
# (servicedesk/client_ip.py). Empty: REMOTE_ADDR is the client.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", [])
# Emails one project may send per hour (0: no limit); more wait for the next hour.
SERVICEDESK_OUTBOUND_EMAILS_PER_PROJECT_PER_HOUR = env_int(
    "SERVICEDESK_OUTBOUND_EMAILS_PER_PROJECT_PER_HOUR", 2000
)
# A comment's files go with its email as real attachments up to this total (bytes); above it
# the email carries links instead (SPEC §7).
SERVICEDESK_EMAIL_ATTACHMENTS_MAX_SIZE = env_int(
    "SERVICEDESK_EMAIL_ATTACHMENTS_MAX_SIZE", 10 * 1024 * 1024
)
# File links in emails work without login (signed for that one file) for this many days.
SERVICEDESK_EMAIL_FILE_LINK_DAYS = env_int("SERVICEDESK_EMAIL_FILE_LINK_DAYS", 90)
# Largest file a team member may attach to a comment in the browser (bytes), and how many.
SERVICEDESK_MAX_UPLOAD_SIZE = env_int("SERVICEDESK_MAX_UPLOAD_SIZE", 25 * 1024 * 1024)
SERVICEDESK_MAX_UPLOADS_PER_NOTE = env_int("SERVICEDESK_MAX_UPLOADS_PER_NOTE", 10)
# PostgreSQL text-search configuration for the tracker's search (stemming language).
SERVICEDESK_SEARCH_CONFIG = env_str("SERVICEDESK_SEARCH_CONFIG", "english")
# The tracker's tab counts are cached (checked against the project's latest change on every
# page) once they count at least this many issues, for at most this many seconds.
SERVICEDESK_TRACKER_COUNTS_CACHE_MIN = env_int("SERVICEDESK_TRACKER_COUNTS_CACHE_MIN", 1000)
SERVICEDESK_TRACKER_COUNTS_CACHE_SECONDS = env_int("SERVICEDESK_TRACKER_COUNTS_CACHE_SECONDS", 300)
# Secrets kept in the database (a project's SMTP credentials) are encrypted with these Fernet
# keys, newest first: the first encrypts, every one decrypts (rotation: put a new key first,
# run `manage.py rotate_encryption_keys`, then drop the old one). Unset, a key derived from
# SECRET_KEY is used; production should set its own (`_FILE` works, as for every secret).
SERVICEDESK_ENCRYPTION_KEYS = (
    env_secret("SERVICEDESK_ENCRYPTION_KEYS", "").replace(",", " ").split()
)
# A project's own SMTP server (custom email address): seconds per network operation, and a CA
# bundle to trust besides the system's (a private CA; tests use one).
SERVICEDESK_CUSTOM_SMTP_TIMEOUT = env_int("SERVICEDESK_CUSTOM_SMTP_TIMEOUT", 30)
SERVICEDESK_CUSTOM_SMTP_CA_FILE = env_str("SERVICEDESK_CUSTOM_SMTP_CA_FILE", "")
# How long a custom address's verification email may take to come back (minutes).
SERVICEDESK_CUSTOM_EMAIL_VERIFICATION_MINUTES = env_int(
    "SERVICEDESK_CUSTOM_EMAIL_VERIFICATION_MINUTES", 30
)
# Akismet checks every new email issue when a key is set (spam goes to the quarantine).
AKISMET_API_KEY = env_secret("AKISMET_API_KEY", "")
AKISMET_SITE_URL = env_str("AKISMET_SITE_URL", SITE_URL)
# The akismet package's client; tests use its TestSyncClient subclasses (no network).
AKISMET_CLIENT_CLASS = env_str("AKISMET_CLIENT_CLASS", "akismet.SyncClient")
# Accept self-signed IMAP certificates (test servers only; never in production).
SERVICEDESK_IMAP_INSECURE_TLS = env_bool("SERVICEDESK_IMAP_INSECURE_TLS", False) and not PRODUCTION

# Webhooks (webhooks/services.py): receivers on private, loopback, link-local or reserved
# networks are refused unless listed here (IP addresses or CIDR networks), e.g. an intranet
# service: "10.0.0.0/8,192.168.1.20".
SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE = env_networks("SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE", [])
# Seconds to connect, send and read the answer, each.
SERVICEDESK_WEBHOOKS_TIMEOUT = env_int("SERVICEDESK_WEBHOOKS_TIMEOUT", 10)
# A failed delivery is tried again after this many seconds, then 5, 30, 120, 360 and 720 times
# as long (1 min, 5 min, 30 min, 2 h, 6 h, 12 h), up to this many attempts in all.
SERVICEDESK_WEBHOOKS_RETRY_DELAY = env_int("SERVICEDESK_WEBHOOKS_RETRY_DELAY", 60)
SERVICEDESK_WEBHOOKS_MAX_ATTEMPTS = env_int("SERVICEDESK_WEBHOOKS_MAX_ATTEMPTS", 7)
# A delivery left "sending" this long (its worker died) is handed out again by the sweeper.
SERVICEDESK_WEBHOOKS_STUCK_AFTER = env_int("SERVICEDESK_WEBHOOKS_STUCK_AFTER", 600)

# Retention (servicedesk/retention.py): after this many days the bodies of sent and failed
# emails, the raw bytes of processed inbound emails and the payloads of finished webhook
# requests are removed; their rows (recipient, status, Message-ID, outcome) stay. 0: kept for
# ever. Run daily by beat at SERVICEDESK_RETENTION_HOUR (TIME_ZONE), this many rows a statement.


def _retention_days(name: str) -> int:
    days = env_int(name, 365)
    if not 0 <= days <= 32767:
        raise ImproperlyConfigured(f"{name} must be a number of days from 0 to 32767.")
    return days


SERVICEDESK_RETENTION_OUTBOUND_DAYS = _retention_days("SERVICEDESK_RETENTION_OUTBOUND_DAYS")
SERVICEDESK_RETENTION_INBOUND_DAYS = _retention_days("SERVICEDESK_RETENTION_INBOUND_DAYS")
SERVICEDESK_RETENTION_WEBHOOK_DAYS = _retention_days("SERVICEDESK_RETENTION_WEBHOOK_DAYS")
SERVICEDESK_RETENTION_HOUR = env_int("SERVICEDESK_RETENTION_HOUR", 3)
SERVICEDESK_RETENTION_BATCH = env_int("SERVICEDESK_RETENTION_BATCH", 1000)

# Mailbox pollers hold a worker slot while they IDLE: they get their own queue so that a
# worker consuming only "mailbox" (threads pool) keeps them apart from email processing.
# Sending (and working out who on the team hears about what) gets its own queue too: a burst of
# emails to send must not delay processing the next inbound email. Workers consume both, the
# default queue first (the Redis transport's "priority" order, as the queues are listed):
# inbound mail is processed first, and what it caused is sent as soon as the burst allows.
# How long the team's notifications wait, at most, while inbound email is queued (seconds).
SERVICEDESK_TEAM_NOTIFICATIONS_YIELD = env_int("SERVICEDESK_TEAM_NOTIFICATIONS_YIELD", 30)
# How often an open issue page tells who else is there (seconds); a viewer who stops polling
# is gone after two and a half times this (issues/presence.py).
SERVICEDESK_PRESENCE_POLL = env_int("SERVICEDESK_PRESENCE_POLL", 10)
CELERY_TASK_ROUTES = {
    "mailroom.tasks.poll_mailbox": {"queue": "mailbox"},
    "issues.tasks.send_outbound_emails": {"queue": "outbound"},
    "notifications.tasks.deliver_events": {"queue": "outbound"},
    "notifications.tasks.sweep_events": {"queue": "outbound"},
    "sla.tasks.sweep_response_clocks": {"queue": "outbound"},
    "webhooks.tasks.send_deliveries": {"queue": "outbound"},
    "webhooks.tasks.sweep_deliveries": {"queue": "outbound"},
    "projects.tasks.send_custom_email_verification": {"queue": "outbound"},
}
# Time limits (seconds). At the soft one SoftTimeLimitExceeded is raised in the task (an email
# being processed is recorded as an error of ours: retried, then failed); at the hard one the
# worker process is replaced and the sweepers hand the task's rows out again. Only the prefork
# pool (the production worker) enforces them; the parse and render budgets above bound the
# work in any pool. By default the hard limit is SERVICEDESK_INBOUND_STUCK_AFTER: by then the
# inbound sweeper has re-queued the task's emails anyway.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", SERVICEDESK_INBOUND_STUCK_AFTER)
CELERY_TASK_SOFT_TIME_LIMIT = env_int(
    "CELERY_TASK_SOFT_TIME_LIMIT", CELERY_TASK_TIME_LIMIT * 3 // 4
)
CELERY_TASK_ANNOTATIONS = {
    # A poller keeps its mailbox for its lease, IDLE included: that is its work.
    "mailroom.tasks.poll_mailbox": {
        "soft_time_limit": SERVICEDESK_IMAP_LEASE + 60,
        "time_limit": SERVICEDESK_IMAP_LEASE + 120,
    },
    # A send task waits on SMTP servers (EMAIL_TIMEOUT per command); its rows go out again
    # only after SERVICEDESK_OUTBOUND_STUCK_AFTER, so it may run until shortly before that.
    "issues.tasks.send_outbound_emails": {
        "soft_time_limit": SERVICEDESK_OUTBOUND_STUCK_AFTER // 2,
        "time_limit": SERVICEDESK_OUTBOUND_STUCK_AFTER * 3 // 4,
    },
    # Up to five webhook requests, each bounded by SERVICEDESK_WEBHOOKS_TIMEOUT (connect,
    # send, read, and the answer's excerpt); the rows go out again after the stuck delay.
    "webhooks.tasks.send_deliveries": {
        "soft_time_limit": SERVICEDESK_WEBHOOKS_STUCK_AFTER // 2,
        "time_limit": SERVICEDESK_WEBHOOKS_STUCK_AFTER * 3 // 4,
    },
}
CELERY_BEAT_SCHEDULE = {
    "record-worker-heartbeat": {
        "task": "mailroom.tasks.record_worker_heartbeat",
        "schedule": 60.0,
    },
    "sweep-inbound": {
        "task": "mailroom.tasks.sweep_inbound",
        "schedule": float(SERVICEDESK_INBOUND_SWEEP_INTERVAL),
    },
    "sweep-outbound": {"task": "issues.tasks.sweep_outbound", "schedule": 30.0},
    "sweep-team-events": {"task": "notifications.tasks.sweep_events", "schedule": 60.0},
    "sweep-webhooks": {"task": "webhooks.tasks.sweep_deliveries", "schedule": 60.0},
    "apply-retention": {
        "task": "issues.tasks.apply_retention",
        "schedule": crontab(minute=17, hour=SERVICEDESK_RETENTION_HOUR),
    },
    # Response targets: warn before one is missed, say when it was (sla/services.py).
    "sweep-response-clocks": {"task": "sla.tasks.sweep_response_clocks", "schedule": 60.0},
    "wake-snoozed-issues": {"task": "issues.tasks.wake_snoozed_issues", "schedule": 60.0},
    "expire-custom-email-verifications": {
        "task": "projects.tasks.expire_custom_email_verifications",
        "schedule": 60.0,
    },
    **{
        f"poll-{name}": {
            "task": "mailroom.tasks.poll_mailbox",
            "schedule": float(SERVICEDESK_IMAP_POLL_INTERVAL),
            "args": [name],
            # A poll that could not start before the next one is due is simply dropped.
            "options": {"expires": SERVICEDESK_IMAP_POLL_INTERVAL},
        }
        for name, mailbox in SERVICEDESK_MAILBOXES.items()
        if mailbox.polled
    },
}

# --- REST API (/api/v4, api/) ---------------------------------------------------------------
# Requests one personal access token (or, without one, one signed-in user or one client address)
# may make per minute; over it: 429 with Retry-After (0: no limit).
SERVICEDESK_API_REQUESTS_PER_MINUTE = env_int("SERVICEDESK_API_REQUESTS_PER_MINUTE", 600)
# Longest life of a new personal access token (days), as GitLab's default of a year.
SERVICEDESK_API_TOKEN_MAX_DAYS = env_int("SERVICEDESK_API_TOKEN_MAX_DAYS", 365)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.AccessTokenAuthentication",
        # The browser's session, with Django's CSRF check on every write.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.authentication.TokenScopeAllows"],
    "DEFAULT_THROTTLE_CLASSES": ["api.authentication.RequestsPerMinute"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "api.views.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Service Desk API",
    "DESCRIPTION": "GitLab v4-shaped REST API: projects, issues, notes, email participants, "
    "Service Desk settings and the inbound ledger. Authenticate with a personal access token "
    "in `PRIVATE-TOKEN` or `Authorization: Bearer`.",
    "VERSION": "4",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v4",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Static and media ------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "uploads")))
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing root
WHITENOISE_USE_FINDERS = DEBUG
# Uploads (files of emails and comments): "local" files under MEDIA_ROOT, or "s3", an
# S3-compatible bucket (AWS S3, MinIO, Ceph…) through django-storages, which every web and
# worker machine then shares. Either way the app serves them itself, to those allowed
# (issues.views.upload_download): the bucket stays private and no URL of it is handed out.
SERVICEDESK_STORAGE = env_str("SERVICEDESK_STORAGE", "local")
if SERVICEDESK_STORAGE == "local":
    _uploads: dict[str, object] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif SERVICEDESK_STORAGE == "s3":
    _uploads = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("SERVICEDESK_S3_BUCKET"),
            # Empty: AWS itself; else e.g. https://minio.internal:9000.
            "endpoint_url": env_str("SERVICEDESK_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("SERVICEDESK_S3_REGION", "") or None,
            # Empty: boto3's own chain (AWS_* variables, ~/.aws, an instance or task role).
            "access_key": env_secret("SERVICEDESK_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_secret("SERVICEDESK_S3_SECRET_ACCESS_KEY", "") or None,
            "location": env_str("SERVICEDESK_S3_PREFIX", ""),  # a key prefix, e.g. "uploads"
            "addressing_style": env_str("SERVICEDESK_S3_ADDRESSING_STYLE", "") or None,
            "default_acl": None,  # the bucket's own (private): objects are never public
            # Keys hold a random directory per upload (issues.models.upload_path): no clash to
            # look for before writing.
            "file_overwrite": True,
            # A file read from the bucket (to serve or attach it) is spooled to a temporary
            # file past this size, not held in memory (django-storages' default: no limit).
            "max_memory_size": 2 * 1024 * 1024,
        },
    }
else:
    raise ImproperlyConfigured("SERVICEDESK_STORAGE must be 'local' or 's3'.")
STORAGES = {
    "default": _uploads,
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Auth and security -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["accounts.backends.HumanOnlyBackend"]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _site.scheme == "https"
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _site.scheme == "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _site.scheme == "https" else 0)
    # HSTS covers this host and its own subdomains (support.example.com, not example.com);
    # "preload" only consents to the browsers' preload list, it submits nothing.
    _hsts = _site.scheme == "https"
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _hsts)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _hsts)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# The languages the product is translated into (README "Languages"): a person picks theirs on
# the profile, a project the one of its customer emails. Catalogues in locale/<code>/.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
