"""Settings of the reference project, all from the environment.

Variable names are a contract (see DESIGN.md, "Environment"): DATABASE_URL,
DATABASE_POOL_MAX_SIZE, REDIS_URL, SECRET_KEY, DEBUG, ALLOWED_HOSTS,
CSRF_TRUSTED_ORIGINS, SECURE_SSL_REDIRECT, RIVYA_PUBLIC_BASE_URL,
RIVYA_API_RATE_LIMIT, RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS.

With nothing set this is the embedded default: SQLite, no Redis, background
work in the web process, an in-memory channel layer, DEBUG on.
"""

from pathlib import Path

import environ

from rivya_api.catalog.local_models import LOCAL_MODELS
from rivya_api.openapi_settings import SPECTACULAR_SETTINGS as RIVYA_SPECTACULAR_SETTINGS
from rivya_api.schedule import BEAT_SCHEDULE as RIVYA_BEAT_SCHEDULE

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)
_INSECURE_KEY = "django-insecure-embedded-default-only-never-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_INSECURE_KEY if DEBUG else "")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "rivya_billing",
    "rivya_webhooks",
    "rivya_api",
]

MIDDLEWARE = [
    "rivya_api.common.middleware.RequestIdMiddleware",
    # Hostile input (NUL, surrogates, deep JSON, bad hosts, oversize bodies) stops here, before anything reads it.
    "rivya_api.common.gate.RequestGateMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on HTML pages (django-csp; CONTENT_SECURITY_POLICY below).
    "rivya_api.common.csp.CSPMiddleware",
    "config.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "rivya_api.common.middleware.ApiErrorMiddleware",
]
# config.middleware.ASGIHandler runs the hooks of Django's middleware above on the event loop
# (no thread hand-off per hook). False: Django's own classes, each hook in a thread under ASGI.
MIDDLEWARE_ON_EVENT_LOOP = env.bool("MIDDLEWARE_ON_EVENT_LOOP", default=True)
# config.middleware.ASGIHandler runs each request's sync code in an idle thread it reuses
# (config.request_threads) instead of a new thread per request. False: Django's thread per request.
REQUEST_THREADS_REUSED = env.bool("REQUEST_THREADS_REUSED", default=True)
# With reused request threads, Django's request_started database receivers are queued to the
# request's thread rather than awaited on the event loop (config.request_started). False: awaited.
REQUEST_STARTED_DEFERRED = env.bool("REQUEST_STARTED_DEFERRED", default=True)
# Those receivers wait for the request thread's first call and ride its hand-off, so a request that
# never uses its thread (a chat stream) never wakes it (config.request_threads). False: submitted at once.
REQUEST_STARTED_ON_FIRST_CALL = env.bool("REQUEST_STARTED_ON_FIRST_CALL", default=True)

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database -----------------------------------------------------------------

VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue on the
    # busy timeout instead of failing with "database is locked" mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's psycopg 3 pool: connections are reused by the pool, not by
    # CONN_MAX_AGE (which must be 0 with a pool), and checked before use.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 0,
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        "timeout": 10,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, broker, channel layer -------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    # Django's RedisCache with a per-process connection pool (under ASGI the stock one connects per request).
    CACHES = {"default": {"BACKEND": "rivya_api.common.redis_cache.RedisCache", "LOCATION": REDIS_URL}}
    # channels_redis blocks in BZPOPMIN for 5 s; redis-py's default read timeout (5 s since 6.0)
    # would race it and kill idle consumers, so reads wait longer than the blocking call.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    # Redis's transport, reconnecting after a restart where kombu 5.7 would stop the worker.
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
    CELERY_RIVYA_IN_PROCESS = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # In memory, and safe to send to from the in-process worker threads (see the class).
    CHANNEL_LAYERS = {"default": {"BACKEND": "rivya_api.pages.layers.ThreadSafeInMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    # No broker: rivya_api.background runs tasks in this process, off the request path.
    CELERY_RIVYA_IN_PROCESS = True

CELERY_TASK_ACKS_LATE = True
# Reconnects after a broker restart even when kombu's close of the lost connection fails (see there).
CELERY_WORKER_CONSUMER = "config.celery:Consumer"
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
# Prefork children per worker (default: the CPU count); each holds its own database pool.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=None)
# Webhook deliveries wait on other people's servers: where receivers may be slow, route them to a
# queue of their own (e.g. "webhooks") served by a thread-pool worker (docs/benchmarks.md, (5)).
CELERY_WEBHOOKS_QUEUE = env.str("CELERY_WEBHOOKS_QUEUE", default="celery")
CELERY_TASK_ROUTES = {
    "rivya_webhooks.deliver": {"queue": CELERY_WEBHOOKS_QUEUE},
    "rivya_webhooks.deliver_batch": {"queue": CELERY_WEBHOOKS_QUEUE},
}
# Celery's Django fixup closes every connection before and after each task, and under
# prefork also closes Django's whole psycopg pool (celery/fixups/django.py, _close_database),
# so each task would open a new PostgreSQL connection. The fixup reads this key
# (CELERY_DB_REUSE_MAX here; it closes only every N tasks), and config/celery.py instead
# hands the connection back to the pool after each task, where the pool's health check
# (CONN_HEALTH_CHECKS) drops connections a database restart broke. 0 restores Celery's default.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1_000_000)
# Workers log through LOGGING below (JSON lines when DEBUG=false) instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The apps' periodic sweeps (chat, webhooks, files, generations, holds, idempotency records).
CELERY_BEAT_SCHEDULE: dict = {**RIVYA_BEAT_SCHEDULE}
# The web process runs the periodic sweeps itself when there is no broker.
RIVYA_IN_PROCESS_BEAT = env.bool("RIVYA_IN_PROCESS_BEAT", default=True)

# --- Security -------------------------------------------------------------------

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# X-Forwarded-Proto says whether the client's connection was HTTPS, but any client can send it: trust
# it only where a proxy in front sets it (true/false). Under gunicorn the server itself honours the
# X-Forwarded-* of the proxies FORWARDED_ALLOW_IPS names, which is the better place (config/gunicorn.py).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("SECURE_PROXY_SSL_HEADER", default=False) else None
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Pages load scripts, styles, images and media from this origin only, and nothing may frame them.
# Every inline script and style lives in a static file; the API's Swagger UI page adds what it needs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'"],
        "connect-src": ["'self'"],  # fetch and the live-updates WebSocket (same host)
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
if env.str("RIVYA_PUBLIC_BASE_URL", default=""):
    # Output previews use signed URLs on the public origin, which may be another host.
    for _directive in ("img-src", "media-src"):
        CONTENT_SECURITY_POLICY["DIRECTIVES"][_directive].append(env.str("RIVYA_PUBLIC_BASE_URL").rstrip("/"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# --- I18n, static, media --------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
MEDIA_URL = "media/"
# Non-file bodies above this are a 413 in the API's error shape.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Rivya ----------------------------------------------------------------------

RIVYA_ACCOUNT_MODEL = "auth.User"

# The model catalog (shape in rivya_api.catalog.spec, price rules in rivya_api.catalog.pricing): the
# built-in local models (rivya_api.catalog.local_models) and two hosted ones. A model is listed only
# where its provider class imports and, for upstream models, where both variables named in "upstream"
# are set. Without "parameters" the schema comes from the provider's parameters_schema(options).
_LOCAL = {model["id"]: model for model in LOCAL_MODELS}
RIVYA_MODELS = [
    _LOCAL["rivya-image-1"],
    _LOCAL["rivya-audio-1"],
    _LOCAL["rivya-video-1"],
    {
        "id": "rivya-image-hd",
        "kind": "image",
        "description": "High-detail image generation served by Rivya's hosted image backend.",
        "provider": "rivya_api.generations.providers.openai_images.OpenAIImagesProvider",
        "options": {"upstream_model": env.str("RIVYA_UPSTREAM_IMAGES_MODEL", default="gpt-image-1")},
        "upstream": {"base_url_env": "RIVYA_UPSTREAM_IMAGES_BASE_URL", "api_key_env": "RIVYA_UPSTREAM_IMAGES_API_KEY"},
        "pricing": {"base": 0, "terms": [{"type": "per_unit", "parameter": "n", "credits": 8}]},
        "limits": {"timeout_seconds": 180},
        "created_at": "2026-05-01T00:00:00Z",
    },
    _LOCAL["rivya-chat-1"],
    {
        "id": "rivya-chat-plus",
        "kind": "chat",
        "description": "A general-purpose chat model served by Rivya's hosted chat backend.",
        "provider": "rivya_api.chat.providers.openai_compatible.OpenAICompatibleChatProvider",
        "options": {"upstream_model": env.str("RIVYA_UPSTREAM_CHAT_MODEL", default="gpt-4o-mini")},
        "upstream": {"base_url_env": "RIVYA_UPSTREAM_CHAT_BASE_URL", "api_key_env": "RIVYA_UPSTREAM_CHAT_API_KEY"},
        "pricing": {"input_per_1k_tokens": 2, "output_per_1k_tokens": 8},
        "limits": {"timeout_seconds": 600, "context_window": 128000, "max_output_tokens": 4096},
        "created_at": "2026-05-01T00:00:00Z",
    },
]

RIVYA_API = {
    "PUBLIC_BASE_URL": env.str("RIVYA_PUBLIC_BASE_URL", default=""),
    "RATE_LIMIT": env.str("RIVYA_API_RATE_LIMIT", default="1200/min"),
    "AUTH_FAILURE_LIMIT": env.str("RIVYA_API_AUTH_FAILURE_LIMIT", default="20/min"),
    # Chat stream events are buffered in Redis (for resume from any process) when there is one.
    "CHAT_STREAM_REDIS_URL": REDIS_URL,
    "MODELS": RIVYA_MODELS,
    "METRICS_TOKEN": env.str("RIVYA_METRICS_TOKEN", default=""),
}
RIVYA_BILLING: dict = {}
RIVYA_WEBHOOKS = {
    # Anything but "true" means false.
    "ALLOW_PRIVATE_NETWORKS": env.str("RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS", default="").lower() == "true",
    # Link-local and cloud-metadata networks stay refused even then, unless listed (comma-separated CIDRs).
    "ALLOWED_NETWORKS": env.list("RIVYA_WEBHOOKS_ALLOWED_NETWORKS", default=[]),
}

# For the project's own DRF views (bench/urls.py's hello). Rivya's views set their renderers, parsers,
# negotiation, authentication, schema class and exception handler themselves and ignore these.
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

# Rivya's document views apply these themselves; here they are for `manage.py spectacular`
# (make openapi, CI), which reads the project's settings.
SPECTACULAR_SETTINGS = {**RIVYA_SPECTACULAR_SETTINGS, "SERVE_INCLUDE_SCHEMA": True}

# --- Logging --------------------------------------------------------------------
# JSON lines in production, readable lines in development; always to stderr and
# always with the request id. Management commands print results to stdout.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "rivya_api.common.logging.RequestIdFilter"},
        # Idle sweeps (every 10-60 s) would otherwise be most of the INFO log; see the class.
        "periodic_tasks": {"()": "rivya_api.common.logging.PeriodicTaskFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "readable": {"format": "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "filters": ["request_id"],
            "formatter": "readable" if DEBUG else "json",
        }
    },
    "root": {"handlers": ["stderr"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Replace Django's own console handler so its lines carry the request id too.
        "django": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django.server": {"level": "WARNING"},
        "rivya.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "celery.app.trace": {"filters": ["periodic_tasks"]},
        "celery.worker.strategy": {"filters": ["periodic_tasks"]},
        "celery.beat": {"filters": ["periodic_tasks"]},
    },
}
