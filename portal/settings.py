"""Settings for the recordings compliance portal, read from the environment.

One module, two modes:

* production (the default): refuses to start unless the secrets and hosts it needs are set
  (see ``_REQUIRED_IN_PRODUCTION``), and turns on every transport-security setting that
  ``manage.py check --deploy`` asks for. A deployment that forgets a variable fails closed,
  never runs with the public development keys below.
* embedded (``DJANGO_DEBUG=1``, which ``make run`` and the test settings set): SQLite, files
  under ``media/``, a local-memory cache, Celery tasks run eagerly, DEBUG on.

Every variable is listed in ``docs/contract.md`` and in the README's configuration table.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from portal.sids import API_KEY_SID, WORKSPACE_SID

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# The dev values below exist only so that a newcomer's first run works; production never sees
# them because it refuses to start without the real ones.
_DEV_SECRET_KEY = "embedded-mode-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
_DEV_MASTER_KEY = "ZW1iZWRkZWQtbW9kZS1vbmx5LW5vdC1zZWNyZXQtMDA="
_DEV_SEAL_SIGNING_KEY = "ZW1iZWRkZWQtbW9kZS1zZWFsLW5vdC1zZWNyZXQtMDA"
_DEV_ROW_MAC_KEY = "ZW1iZWRkZWQtbW9kZS1yb3dtYWMtbm90LXNlY3JldDA"
_REQUIRED_IN_PRODUCTION = (
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "PORTAL_MASTER_KEY",
    "AUDIT_SEAL_SIGNING_KEY",
    "AUDIT_ROW_MAC_KEY",
)

if not DEBUG:
    _missing = [name for name in _REQUIRED_IN_PRODUCTION if not env.str(name, default="")]
    if _missing:
        raise ImproperlyConfigured(
            "Production mode (the default) needs these environment variables: "
            + ", ".join(_missing)
            + ". For the embedded demo mode instead, set DJANGO_DEBUG=1 (make run does)."
        )

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"]
)
# Comma-separated; the first key seals new secrets, every key listed can open old ones, so a
# master key is rotated by putting the new one first and running ``rotate_master_key``.
PORTAL_MASTER_KEYS = env.list("PORTAL_MASTER_KEY", default=[_DEV_MASTER_KEY])

INSTALLED_APPS = [
    # The admin site requires a TOTP second factor in production (portal/admin_site.py).
    "portal.admin_apps.ComplianceAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "django_otp",
    "portal.otp_apps.TotpDevicesConfig",  # django_otp.plugins.otp_totp, with a readable name
    # Counts failed admin logins and locks them out (see AXES_* below).
    "axes",
    "recordings",
    "audit",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    # Before anything that may answer: a preflight is answered here and never reaches a view
    # (so it writes no audit row), and every answer of the two player endpoints gets its
    # CORS headers, errors included, so the player can read them.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The admin's static files, from STATIC_ROOT (collectstatic, which the Dockerfile runs).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.AdminReferrerPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "portal.middleware.SessionTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a login attempt that is (or just got) locked out into
    # the lockout page (AXES_LOCKOUT_CALLABLE).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded mode: runserver and run_periodic_work write at once. WAL lets readers go on
    # during a write; IMMEDIATE takes the write lock at BEGIN, so a writer waits (up to the
    # timeout) instead of failing with "database is locked" when upgrading a read lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DATABASE_PREPARED_STATEMENTS", default=True
):
    # Server-side binding (Django's documented OPTIONS) lets psycopg prepare a statement the
    # second time it runs, so PostgreSQL stops parsing and planning the hot paths' queries on
    # every request. Turn off behind a pooler that cannot keep prepared statements (PgBouncer
    # before 1.21, or without max_prepared_statements).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=2
    )
# PostgreSQL role that owns the schema: `manage.py migrate` connects as it, then grants the
# DATABASE_URL role only what the portal needs, so that role can append to the audit tables but
# never change, empty, alter or drop them (audit.database_roles). Unset: DATABASE_URL does all.
DATABASE_OWNER_URL = env.str("DATABASE_OWNER_URL", default="")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# How long a request waits on the cache's Redis to connect or to answer (redis-py's default is
# 5 s each). Every use of the cache takes an error as "no cached answer" (Twilio's token
# answers, archive leases) or refuses (admin login counts), so a Redis that accepts connections
# but stops answering costs a player's request about a second (a get and a set), not ten.
REDIS_CACHE_TIMEOUT_SECONDS = env.float("REDIS_CACHE_TIMEOUT_SECONDS", default=0.5)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "portal",
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CACHE_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_CACHE_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
MEDIA_ROOT = Path(env.str("PORTAL_MEDIA_ROOT", default=str(BASE_DIR / "media")))
MEDIA_URL = "media/"

# --- Storage -------------------------------------------------------------------------------
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="") or None
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="") or None
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="") or None
AWS_S3_SIGNATURE_VERSION = "s3v4"
# MinIO, moto and VPC endpoints answer path-style; AWS itself picks its own.
AWS_S3_ADDRESSING_STYLE = "path" if AWS_S3_ENDPOINT_URL else None
AWS_DEFAULT_ACL = None
AWS_QUERYSTRING_AUTH = True
# Every S3 call (recordings/integrations/storage.py) gives up when S3 does not accept the
# connection, or sends nothing for this many seconds; each call is tried twice at most. A hung S3
# then costs a media request a bounded time, never a worker (README, "Timeouts").
STORAGE_CONNECT_TIMEOUT = env.float("STORAGE_CONNECT_TIMEOUT", default=3.0)
STORAGE_READ_TIMEOUT = env.float("STORAGE_READ_TIMEOUT", default=5.0)
# /readyz answers within this many seconds whatever hangs: each dependency is checked at the same
# time, and one that has not answered by then is reported failed (portal/health.py).
READINESS_TIMEOUT = env.float("READINESS_TIMEOUT", default=1.5)
_RECORDINGS_STORAGE = (
    {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"file_overwrite": True}}
    if AWS_STORAGE_BUCKET_NAME
    else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
)
STORAGES = {
    "default": _RECORDINGS_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Twilio --------------------------------------------------------------------------------
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
# An API key (Twilio's recommendation) authenticates REST calls, token validation and media
# downloads instead of the auth token, which then only checks webhook signatures. Both or neither.
TWILIO_API_KEY_SID = env.str("TWILIO_API_KEY_SID", default="")
TWILIO_API_KEY_SECRET = env.str("TWILIO_API_KEY_SECRET", default="")
if bool(TWILIO_API_KEY_SID) != bool(TWILIO_API_KEY_SECRET):
    raise ImproperlyConfigured(
        "TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET go together: set both (the API key's SK… "
        "SID and its secret), or neither (the auth token is used instead)"
    )
if TWILIO_API_KEY_SID and not API_KEY_SID.fullmatch(TWILIO_API_KEY_SID):
    raise ImproperlyConfigured(
        "TWILIO_API_KEY_SID must be an API key SID: SK followed by 32 hex digits, not "
        f"{TWILIO_API_KEY_SID[:40]!r}"
    )
TWILIO_REGION = env.str("TWILIO_REGION", default="")
TWILIO_API_OVERRIDE = env.str("TWILIO_API_OVERRIDE", default="").rstrip("/")
# Seconds before a REST call to Twilio gives up; the sync task retries transient failures.
TWILIO_HTTP_TIMEOUT = env.float("TWILIO_HTTP_TIMEOUT", default=10.0)

# Flex linkage (docs/contract.md, "Flex linkage"): the TaskRouter workspace whose events and
# tasks the portal handles (unset: no linkage), and where conversations.media is written.
TWILIO_WORKSPACE_SID = env.str("TWILIO_WORKSPACE_SID", default="")
if TWILIO_WORKSPACE_SID and not WORKSPACE_SID.fullmatch(TWILIO_WORKSPACE_SID):
    raise ImproperlyConfigured(
        "TWILIO_WORKSPACE_SID must be WS followed by 32 hex digits, not "
        f"{TWILIO_WORKSPACE_SID[:40]!r}"
    )
FLEX_MEDIA_LEVEL = env.str("FLEX_MEDIA_LEVEL", default="task")
if FLEX_MEDIA_LEVEL not in ("task", "reservation", "off"):
    raise ImproperlyConfigured(
        f"FLEX_MEDIA_LEVEL must be task, reservation or off, not {FLEX_MEDIA_LEVEL[:40]!r}"
    )

PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")
# CORS (django-cors-headers) for the Flex origins (FLEX_ALLOWED_ORIGINS) on the player's
# endpoints only: exact origins, never "*", no credentials; Vary: Origin is appended to what a
# view set, never overwritten.
CORS_ALLOWED_ORIGINS = env.list("FLEX_ALLOWED_ORIGINS", default=["https://flex.twilio.com"])
CORS_URLS_REGEX = r"^/(api/v1/url-provider|api/v1/recordings/[\s\S]*/waveform$|media/)"
CORS_ALLOW_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_ALLOW_HEADERS = ("authorization", "cache-control", "pragma", "range")
CORS_EXPOSE_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges", "X-Request-ID")
CORS_PREFLIGHT_MAX_AGE = 600
MEDIA_LINK_TTL_SECONDS = env.int("MEDIA_LINK_TTL_SECONDS", default=300)
# Serve every recording through the portal's media endpoint, even unencrypted ones in S3 that
# could get a presigned URL (one place to log every byte; no S3 URL ever reaches a browser).
MEDIA_LINKS_VIA_PORTAL = env.bool("MEDIA_LINKS_VIA_PORTAL", default=False)
# /demo/player: a page that behaves like the Flex Insights Player (embedded mode only).
DEMO_PLAYER_ENABLED = env.bool("DEMO_PLAYER_ENABLED", default=DEBUG)

# Key(s) that sign the audit log's digests (HMAC-SHA256), comma-separated: the first signs, all
# verify. Unset: derived from PORTAL_MASTER_KEY with its own label, never from DJANGO_SECRET_KEY.
AUDIT_SIGNING_KEY = env.list("AUDIT_SIGNING_KEY", default=[])
# Audit evidence (audit.evidence, audit.sealer, audit.anchors). Keys never come from
# DJANGO_SECRET_KEY or the database; comma-separated to rotate (the first signs or MACs, every
# one listed verifies).
AUDIT_SEAL_SIGNING_KEYS = env.list("AUDIT_SEAL_SIGNING_KEY", default=[_DEV_SEAL_SIGNING_KEY])
AUDIT_ROW_MAC_KEYS = env.list("AUDIT_ROW_MAC_KEY", default=[_DEV_ROW_MAC_KEY])
AUDIT_ANCHOR_BUCKET = env.str("AUDIT_ANCHOR_BUCKET", default="")
AUDIT_ANCHOR_DIR = env.str(
    "AUDIT_ANCHOR_DIR", default=str(BASE_DIR / "var" / "audit-anchors") if DEBUG else ""
)
AUDIT_ANCHOR_RETENTION_DAYS = env.int("AUDIT_ANCHOR_RETENTION_DAYS", default=2190)
AUDIT_SEAL_MAX_DELAY_SECONDS = env.int("AUDIT_SEAL_MAX_DELAY_SECONDS", default=60)
# Officers' access-log export files are deleted this long after they were written.
AUDIT_EXPORT_RETENTION_HOURS = env.int("AUDIT_EXPORT_RETENTION_HOURS", default=72)
# An evidence package job is killed past this many minutes (Celery's hard time limit); one still
# running later lost its worker and is marked failed (recordings.lifecycle.evidence_sweep). Keep
# it below the broker's visibility timeout (2 hours), so no job is handed to a second worker
# while the first still writes it.
EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES = env.int("EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES", default=100)
# Embedded mode has no beat and no sealer process: each appended row is sealed as it commits.
AUDIT_SEAL_INLINE = env.bool("AUDIT_SEAL_INLINE", default=not REDIS_URL)
# Maker/checker (audit.control_changes): a change that weakens control (a new or wider allow rule,
# a shorter retention, a released legal hold, a deleted private key, paused seal anchoring) takes
# effect only once a second staff member approves it. Off: such changes apply at once, as before.
CONTROL_CHANGES_NEED_APPROVAL = env.bool("CONTROL_CHANGES_NEED_APPROVAL", default=False)
# The SIEM's syslog collector for `run_audit_forwarder` (audit.forwarder): RFC 5424 over TCP,
# TLS (RFC 5425) unless AUDIT_SYSLOG_TLS=0; AUDIT_SYSLOG_CA_FILE: the CA bundle that verifies the
# collector's certificate (the system's CAs when empty). No host: no forwarder.
AUDIT_SYSLOG_HOST = env.str("AUDIT_SYSLOG_HOST", default="")
AUDIT_SYSLOG_PORT = env.int("AUDIT_SYSLOG_PORT", default=6514)
AUDIT_SYSLOG_TLS = env.bool("AUDIT_SYSLOG_TLS", default=True)
AUDIT_SYSLOG_CA_FILE = env.str("AUDIT_SYSLOG_CA_FILE", default="")

# --- Celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection around every task unless this is set;
# `portal.celery` instead applies CONN_MAX_AGE and the health checks between tasks, as Django
# does between requests. Celery still closes it after this many tasks.
CELERY_DB_REUSE_MAX = 1000
# Workers keep Django's logging (JSON lines, request ids, the redacting filter) instead of
# Celery replacing the root logger's handlers with its own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A webhook must answer fast even when the broker is down: give up publishing quickly and let
# the periodic dispatcher pick the stored event up later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    # Longer than the longest retry countdown, so delayed retries are not delivered twice.
    "visibility_timeout": 2 * 3600,
}
CELERY_BEAT_SCHEDULE = {
    "dispatch-pending-recording-events": {
        "task": "recordings.tasks.dispatch_pending_events",
        "schedule": timedelta(minutes=1),
    },
    "dispatch-pending-taskrouter-events": {
        "task": "recordings.tasks.dispatch_pending_taskrouter_events",
        "schedule": timedelta(minutes=1),
    },
    "link-flex-recordings": {
        "task": "recordings.tasks.link_flex_recordings",
        "schedule": timedelta(minutes=10),
    },
    "sync-flex-directory": {
        "task": "recordings.tasks.sync_flex_directory",
        "schedule": crontab(minute=37),
    },
    "reconcile-recent-recordings": {
        "task": "recordings.tasks.reconcile_recent",
        "schedule": timedelta(minutes=30),
    },
    "summarize-media-links": {
        "task": "recordings.tasks.summarize_media_links",
        "schedule": timedelta(minutes=5),
    },
    "expire-access-log-exports": {
        "task": "audit.tasks.expire_access_log_exports",
        "schedule": crontab(minute=23),
    },
    "expire-evidence-packages": {
        "task": "recordings.tasks.expire_evidence_packages",
        "schedule": crontab(minute=27),
    },
    "seal-audit-log": {
        "task": "audit.tasks.seal_audit_log",
        "schedule": timedelta(seconds=15),
    },
    "sign-audit-log-head": {
        "task": "audit.tasks.sign_audit_head",
        "schedule": timedelta(minutes=15),
    },
    "verify-audit-log": {
        "task": "audit.tasks.verify_audit_chain",
        "schedule": crontab(hour=3, minute=17),
    },
    "verify-audit-log-fully": {
        "task": "audit.tasks.verify_audit_chain",
        "schedule": crontab(hour=4, minute=7, day_of_week="sun"),
        "kwargs": {"actor": "system:weekly", "full": True},
    },
    "resume-abandoned-audit-verifications": {
        "task": "audit.tasks.sweep_full_verifications",
        "schedule": crontab(minute="*/5"),
    },
    "refresh-twilio-subaccounts": {
        "task": "recordings.tasks.refresh_subaccounts",
        "schedule": crontab(minute=7),
    },
    "apply-retention-policies": {
        "task": "recordings.tasks.apply_retention",
        "schedule": crontab(hour=2, minute=41),
    },
    "reconcile-hold-locks": {
        "task": "recordings.tasks.reconcile_hold_locks",
        "schedule": timedelta(minutes=15),
    },
    "sweep-flex-media": {
        "task": "recordings.tasks.sweep_flex_media",
        "schedule": timedelta(minutes=1),
    },
    "sweep-evidence-packages": {
        "task": "recordings.tasks.sweep_evidence_packages",
        "schedule": crontab(minute="*/5"),
    },
    "build-access-review": {
        "task": "audit.tasks.build_access_review",
        "schedule": crontab(hour=1, minute=13),
    },
    # The dashboard's daily rollup of the access log (audit.rollups): hourly, so a day is rolled
    # up soon after midnight UTC and a late row is counted within the hour.
    "rollup-access-log": {
        "task": "audit.tasks.rollup_access_log",
        "schedule": crontab(minute=9),
    },
}

# --- Security ------------------------------------------------------------------------------
SESSION_COOKIE_AGE = 8 * 3600  # absolute admin session lifetime
SESSION_IDLE_TIMEOUT_SECONDS = 30 * 60
# Staff log in to the admin with a TOTP second factor (django-otp). Always on in production;
# embedded mode stays password-only unless ADMIN_REQUIRE_OTP=1.
ADMIN_REQUIRE_OTP = True if not DEBUG else env.bool("ADMIN_REQUIRE_OTP", default=False)
OTP_TOTP_ISSUER = "Recordings compliance portal"
# TOTP secrets are shown once, when a device is added, never again in the admin.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# No per-device delay after wrong codes: django-otp's doubles without bound, so a stranger who
# knows a colleague's password could lock that colleague's device for days. django-axes below
# counts wrong codes like wrong passwords instead, per username and address.
OTP_TOTP_THROTTLE_FACTOR = 0
# Admin login throttling (django-axes; SECURITY.md explains the choice). A failed login is a
# wrong password, or a right password with a wrong or missing code (portal.admin_site); all get
# the same answer. Failures are counted per username and client address and per client
# address (the portal's own client_ip, which believes X-Forwarded-For only from
# TRUSTED_PROXIES); the attempt that reaches ADMIN_LOGIN_FAILURE_LIMIT, and every attempt after
# it until ADMIN_LOGIN_COOLOFF_MINUTES have passed, gets 429 without its password being checked.
# Attempts while locked do not extend the lock; a successful login clears the counts of its
# username and address. The counts live in the cache (Redis), not the database.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "portal.http.client_ip"
AXES_LOCKOUT_CALLABLE = "portal.admin_site.login_locked_out"
# Access-log rows (audit.staff_logins) are the record of logins; no second one in the admin.
AXES_ENABLE_ADMIN = False
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token"]
# No "AXES: BEGIN" line at every start; axes' own failure lines stay (without the username).
AXES_VERBOSE = False
if not REDIS_URL:
    # axes.W001 warns that a local-memory cache counts per process: true, and exact for the
    # embedded mode's single runserver process. Production runs Redis (README, Modes).
    SILENCED_SYSTEM_CHECKS = ["axes.W001"]
# Compliance dashboard alerts: one identity opening more than this many recordings in an hour
# (bulk listening); denials in the last hour above both this floor and this multiple of the
# hourly average of the week before (a denial spike).
AUDIT_ALERT_BULK_ACCESS_PER_HOUR = env.int("AUDIT_ALERT_BULK_ACCESS_PER_HOUR", default=50)
AUDIT_ALERT_DENIAL_SPIKE_MIN = env.int("AUDIT_ALERT_DENIAL_SPIKE_MIN", default=20)
AUDIT_ALERT_DENIAL_SPIKE_FACTOR = env.int("AUDIT_ALERT_DENIAL_SPIKE_FACTOR", default=3)
# Periodic access review (audit.reviews): a report of each completed UTC week (Monday to
# Monday) or calendar month, built daily by beat once the period has ended, due for sign-off
# this many days after the period's end (then a dashboard alert); "off" builds none.
ACCESS_REVIEW_SCHEDULE = env.str("ACCESS_REVIEW_SCHEDULE", default="monthly")
if ACCESS_REVIEW_SCHEDULE not in ("weekly", "monthly", "off"):
    raise ImproperlyConfigured(
        "ACCESS_REVIEW_SCHEDULE must be weekly, monthly or off, not "
        f"{ACCESS_REVIEW_SCHEDULE[:40]!r}"
    )
ACCESS_REVIEW_DUE_DAYS = env.int("ACCESS_REVIEW_DUE_DAYS", default=7)
if not 1 <= ACCESS_REVIEW_DUE_DAYS <= 365:
    raise ImproperlyConfigured(
        f"ACCESS_REVIEW_DUE_DAYS must be a whole number of days from 1 to 365, not "
        f"{ACCESS_REVIEW_DUE_DAYS}"
    )
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Proxies whose X-Forwarded-For hops are trusted (IP addresses or CIDR networks).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    if TRUSTED_PROXIES:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- REST framework ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Recordings compliance portal",
    "DESCRIPTION": "Secure playback of Twilio call recordings kept in the customer's storage.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Logging -------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "portal.logging.RequestIdFilter"},
        "redact": {"()": "portal.logging.RedactingFilter"},
    },
    "formatters": {
        "json": {"()": "portal.logging.JsonFormatter"},
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            # Handler filters see every record, including those propagated from libraries.
            "filters": ["request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "twilio.http_client": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # Whatever writes request lines goes through the console handler's filters, never a
        # handler of its own: Django's defaults (runserver's request lines, DEBUG's console),
        # gunicorn's access and error logs (portal/gunicorn.py passes it this dict) and the
        # handler Celery's workers give their task loggers unless one is configured here.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": True},
        "celery.task": {"handlers": ["console"], "propagate": False},
    },
}
