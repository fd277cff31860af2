"""Settings for benchmarks only: the reference project plus a hello-world baseline and a no-op model.

Everything else (middleware, authentication, throttling, pools, logging) is
exactly ``config.settings``, so a baseline and the path it is compared with run
through the same stack. Never used outside ``bench/``.

``RIVYA_BENCH_DB_POOL=off`` turns Django's PostgreSQL pool off (a new connection
per request), for the pooling on/off comparison.
"""

from config.settings import *  # noqa: F403
from config.settings import DATABASES, RIVYA_API, RIVYA_MODELS, env

ROOT_URLCONF = "bench.urls"

# Load generators send one key far past any production limit; the limiter still runs
# (its Redis counter is part of every authenticated request's cost), it just never says no; unless the
# run turned it off (the chat harness does, RIVYA_API_RATE_LIMIT=off, for the chat turn and its floor alike).
if env.str("RIVYA_API_RATE_LIMIT", default="").lower() != "off":
    RIVYA_API = {**RIVYA_API, "RATE_LIMIT": "100000000/min"}

RIVYA_API["MODELS"] = [
    *RIVYA_MODELS,
    {
        "id": "bench-noop",
        "kind": "image",
        "description": "Benchmarks only: returns a 1x1 PNG at once.",
        "provider": "bench.noop.NoopImageProvider",
        "pricing": {"base": 1},
        "limits": {"timeout_seconds": 30},
        "created_at": "2026-05-01T00:00:00Z",
    },
]

# The raw Celery baseline's task lives in bench.tasks, the no-op jobs' floor in bench.job_floor; workers
# started with these settings import them.
CELERY_IMPORTS = ["bench.tasks", "bench.job_floor"]

if env.str("RIVYA_BENCH_DB_POOL", default="on") == "off" and "pool" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["OPTIONS"].pop("pool")
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# bench/generation_drain.py --switch: the worker it starts runs with these boolean settings off
# ("[NAMESPACE.]NAME", comma-separated; RIVYA_API when no namespace is named).
for _switch in filter(None, env.str("RIVYA_BENCH_SWITCHES_OFF", default="").split(",")):
    _namespace, _, _name = _switch.strip().rpartition(".")
    globals()[_namespace or "RIVYA_API"] = {**globals().get(_namespace or "RIVYA_API", {}), _name: False}

# Paired runs of the chat turn's funds hint (rivya_api.chat.funds_hint): RIVYA_BENCH_CHAT_FUNDS_HINT=off.
if env.str("RIVYA_BENCH_CHAT_FUNDS_HINT", default="on") == "off":
    RIVYA_API["CHAT_FUNDS_HINT"] = False
