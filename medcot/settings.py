"""MedCoT settings, read from the environment.

Every default runs on a fresh laptop: SQLite in ./var, a filesystem Celery broker (no server
needed, a real worker still runs), the simulated LLM. Production sets DEBUG=false and the
variables listed in .env.example; `manage.py check --deploy` is then clean.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("MEDCOT_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.getenv(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.getenv(name, default).split(",") if part.strip()]


DEBUG = env_bool("DEBUG", True)

_DEV_SECRET = "insecure-development-key-only-for-localhost-never-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY") or (_DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "medcot",
    "generation",
    "review",
    "review.releases",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: a signed-in person's own choice of language overrides the browser's.
    "medcot.i18n.ProfileLanguageMiddleware",
    "medcot.login_throttle.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "medcot.middleware.ContentSecurityPolicyMiddleware",
    "medcot.errors.ErrorPagesMiddleware",
]

ROOT_URLCONF = "medcot.urls"
WSGI_APPLICATION = "medcot.wsgi.application"

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
                "django.template.context_processors.i18n",
                "medcot.context_processors.medcot",
            ],
        },
    },
]

# Database: SQLite in ./var on a laptop, PostgreSQL through DATABASE_URL everywhere else.
# SQLite gets WAL and IMMEDIATE transactions so the web process and a worker can share it.
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'medcot.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# The interface language: the person's choice (the header's switcher, kept on their profile;
# a cookie before they sign in), else the browser's Accept-Language, else English. The compiled
# catalogues are committed (locale/); `make messages` regenerates them (docs/translating.md).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "medcot_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
# Number formats of our own: Chinese tables group thousands with commas too (1,234,567).
FORMAT_MODULE_PATH = ["medcot.formats"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Uploads: seed files up to MEDCOT_MAX_UPLOAD_MB are accepted (36,210 MedQA-style items are
# about 40 MB); anything larger is refused before it is read.
MEDCOT_MAX_UPLOAD_MB = env_int("MEDCOT_MAX_UPLOAD_MB", 100)
DATA_UPLOAD_MAX_MEMORY_SIZE = MEDCOT_MAX_UPLOAD_MB * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Security. MEDCOT_HTTPS defaults to on in production; turn it off only for a plain-HTTP
# deployment on a trusted network (docker compose on a laptop).
MEDCOT_HTTPS = env_bool("MEDCOT_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = MEDCOT_HTTPS
CSRF_COOKIE_SECURE = MEDCOT_HTTPS
LANGUAGE_COOKIE_SECURE = MEDCOT_HTTPS
LANGUAGE_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = MEDCOT_HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if MEDCOT_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = MEDCOT_HTTPS
SECURE_HSTS_PRELOAD = MEDCOT_HTTPS
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("MEDCOT_BEHIND_PROXY", False) else None
)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600)
X_FRAME_OPTIONS = "DENY"

# Celery. Without CELERY_BROKER_URL the broker is a folder on disk, so `make run` starts a real
# worker process with no server. Production and CI use Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Long LLM calls are normal: a message must not be handed to a second worker while the
    # first still holds it (Redis redelivers unacked messages after the visibility timeout).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3 * 3600)
    }
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
MEDCOT_LLM_QUEUE = "llm"
# Periodic housekeeping (run one `celery beat`, or `worker -B` on a single machine): first-pass
# submissions take effect once their undo window has passed, and consensus items that already
# hold enough agreeing votes are settled, even while nobody is on the review pages.
CELERY_BEAT_SCHEDULE = {
    "first-pass-apply-due": {"task": "review.tasks.first_pass_apply_due", "schedule": 30.0},
    "consensus-settle-ready": {"task": "review.tasks.consensus_settle_ready", "schedule": 60.0},
    # Dawid–Skene over every verdict, per project whose verdicts changed (review/quality).
    "quality-refit": {
        "task": "review.tasks.quality_refit",
        "schedule": env_float("MEDCOT_QUALITY_REFIT_SECONDS", 300.0),
    },
    # LLM jobs whose process died between committing them and sending their message.
    "llm-jobs-redispatch-lost": {
        "task": "generation.sweep.jobs_redispatch_lost",
        "schedule": env_float("MEDCOT_JOB_SWEEP_SECONDS", 60.0),
    },
}
# How long a queued job may wait for its message to be sent before the sweep sends it again.
MEDCOT_JOB_DISPATCH_GRACE = env_float("MEDCOT_JOB_DISPATCH_GRACE", 60.0)

# The LLM. Keys are read from the environment where they are used, never stored or logged.
MEDCOT_LLM_BASE_URL = env_str("MEDCOT_LLM_BASE_URL")
MEDCOT_LLM_MODEL = env_str("MEDCOT_LLM_MODEL")
MEDCOT_LLM_API_KEY_ENV = "MEDCOT_LLM_API_KEY"
MEDCOT_LLM_TIMEOUT = env_float("MEDCOT_LLM_TIMEOUT", 600.0)
MEDCOT_LLM_MAX_IN_FLIGHT = env_int("MEDCOT_LLM_MAX_IN_FLIGHT", 16)
# Where the simulated OpenAI-compatible server listens when no real LLM is configured.
MEDCOT_SIMULATOR_URL = env_str("MEDCOT_SIMULATOR_URL", "http://127.0.0.1:8765/v1")

# Where the demo data comes from (the repository's sibling shared/data folder by default).
MEDCOT_DEMO_DATA_DIR = Path(
    env_str("MEDCOT_DEMO_DATA_DIR", str(BASE_DIR.parent / "shared" / "data"))
)

REST_FRAMEWORK = {
    # Token first, so a request without credentials gets 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "medcot.api.pagination.Cursor",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "medcot.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MedCoT API",
    "DESCRIPTION": "Projects, seed imports, items, generation runs and releases. See docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "medcot.api.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "LanguageEnum": "medcot.models.Language",
        "ProjectLanguageEnum": "medcot.models.ProjectLanguage",
        "QuestionTypeEnum": "medcot.models.QuestionType",
        "ItemStatusEnum": "medcot.lifecycle.Status",
    },
}

# Login throttling: after this many failed sign-ins for one username or one address within the
# window, further attempts are refused until the window passes.
MEDCOT_LOGIN_FAILURE_LIMIT = env_int("MEDCOT_LOGIN_FAILURE_LIMIT", 5)
MEDCOT_LOGIN_FAILURE_WINDOW = env_int("MEDCOT_LOGIN_FAILURE_WINDOW", 15 * 60)
# A cache shared by every web process (Redis) makes those counts add up across processes.
if env_str("MEDCOT_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env_str("MEDCOT_CACHE_URL"),
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
