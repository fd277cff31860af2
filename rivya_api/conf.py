"""Settings for rivya_api, read from the ``RIVYA_API`` dict.

Read ``api_settings.X`` inside functions, never at import time, so that
``override_settings`` and the ``rivya_settings`` test fixture take effect.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rivya_core.conf import AppSettings

DEFAULTS: dict[str, Any] = {
    # Absolute origin for URLs built outside a request (webhook payloads, emails).
    "PUBLIC_BASE_URL": "",
    # Callable(user) -> account: the account a logged-in Studio user acts as.
    "ACCOUNT_FOR_USER": "rivya_api.accounts.user_is_account",
    # The template the settings, Studio and documentation pages extend. Name your own layout
    # to render them inside it; it needs the blocks "title", "head" and "content" (the
    # integration guide lists the optional ones).
    "BASE_TEMPLATE": "rivya_api/base.html",
    # Where the pages' "Log out" button posts: a URL name or a path ("" hides the button).
    # A name the host does not provide hides the button too; the pages never fail on it.
    "LOGOUT_URL": "logout",
    # Where background work runs (rivya_api.background): "auto" (in this process when the project
    # has no Celery app of its own, else that app's workers), "in_process" or "celery".
    "BACKGROUND": "auto",
    # In Rivya's own in-process mode, the web process also runs the periodic sweeps (from its
    # first request on). False: run them elsewhere, e.g. `celery beat` on rivya_api.schedule.
    "IN_PROCESS_BEAT": True,
    # Callable(account) -> bool: False and every key of the account answers 401 account_disabled.
    "ACCOUNT_IS_ACTIVE": "rivya_api.accounts.account_is_active",
    # Largest request body accepted under /api/v1/ before it is read (413 above).
    "MAX_REQUEST_BYTES": 64 * 1024 * 1024,
    # JSON (bodies and JSON fields) nested deeper than this is a 400 at the gate (rivya_api.common.gate).
    "MAX_JSON_DEPTH": 64,
    # Every authenticated API view uses these (see rivya_api.common.views.AccountScopedMixin).
    "AUTHENTICATION_CLASSES": ["rivya_api.keys.authentication.APIKeyAuthentication"],
    "THROTTLE_CLASSES": ["rivya_api.keys.throttling.APIKeyRateThrottle"],
    # Requests per key and window, "<n>/<unit>" with unit s, min, hour or day
    # (e.g. "1200/min", "50/10s"); "off" disables. From RIVYA_API_RATE_LIMIT.
    "RATE_LIMIT": "1200/min",
    # Requests with an unknown or malformed key per client address and window, then 429
    # (rivya_api.keys.guessing); "off" disables. From RIVYA_API_AUTH_FAILURE_LIMIT.
    "AUTH_FAILURE_LIMIT": "20/min",
    # Cache alias holding the per-key request counters (Redis when REDIS_URL is set).
    "RATE_LIMIT_CACHE_ALIAS": "default",
    # How long a key lookup stays cached (0: every request reads the row). See rivya_api.keys.keystore.
    "KEY_CACHE_SECONDS": 60,
    # Cache alias holding the key lookups.
    "KEY_CACHE_ALIAS": "default",
    # Only cache key lookups in a cache every process shares (not LocMemCache), so a
    # revocation reaches all processes at once.
    "KEY_CACHE_SHARED_ONLY": True,
    # Read keys with the query compiled once per thread (rivya_api.keys.fastpath) rather than
    # compiling the ORM query on every lookup. False: the plain ORM query.
    "KEY_LOOKUP_COMPILED": True,
    # Read the address's failed-lookup counter and the key's cache entry in one cache round trip
    # (get_many; rivya_api.keys.authentication) when both live in one cache. False: two reads.
    "AUTH_CACHE_READS_BATCHED": True,
    # With AUTH_CACHE_READS_BATCHED, both caches one Redis and a RATE_LIMIT: count the request
    # against its key's limit in that same round trip (rivya_api.keys.onetrip; the counter named by
    # the secret's hash), so a rate-limited request makes one cache round trip before its view, not
    # two. False: the throttle counts in a round trip of its own (the counter named by the key's id).
    "RATE_LIMIT_IN_AUTH_TRIP": True,
    # Skip a chat turn's credits pre-check (one SELECT) when the key's funds hint covers its price: the
    # wallet's available as the key's last turn's batched finish read it (no round trip of its own),
    # kept 30 s in the key cache's Redis and read in authentication's MGET (rivya_api.chat.funds_hint).
    # Never refused on the hint (missing or low: the SELECT); a stale-high hint ends in the commit's
    # 402, nothing held, and that refusal lowers the hint to the wallet's available. PostgreSQL with
    # the key cache on Redis, keys without a spend limit only.
    # False: the SELECT on every turn.
    "CHAT_FUNDS_HINT": True,
    # Validate the chat request (and render GET /credits when CREDITS_BODY_PLAIN is off) with
    # serializer fields copied once per thread (rivya_api.common.reused_fields) rather than DRF's
    # deep copy of them for every request. False: DRF's copy per request.
    "SERIALIZER_FIELDS_REUSED": True,
    # Build GET /credits' body with a plain function (rivya_api.credits.serializers.credits_output)
    # that gives what its serializer gives. False: CreditsOutputSerializer renders it.
    "CREDITS_BODY_PLAIN": True,
    # Build the file object embedded in a generation's responses and webhook events with a plain
    # function (rivya_api.files.serializers.file_body) that gives what FileOutputSerializer gives.
    # False: the serializer renders it.
    "FILE_BODY_PLAIN": True,
    # Resolve a request's URL once (rivya_api.common.resolve_once): the body limit, the gate and
    # Django's handler share the match rather than each walking the URL tree. False: each resolves.
    "RESOLVE_ONCE": True,
    # rivya_api.common.redis_cache.RedisCache: one Redis connection pool and client per process
    # (Django's connects anew for each request under ASGI). False: Django's own client.
    "REDIS_CACHE_SHARED_POOL": True,
    # last_used_at is written at most once per this many seconds per key.
    "KEY_LAST_USED_INTERVAL": 60,
    # Chat: a turn still in progress after this long is stale: it no longer blocks its
    # session, and the sweeper fails it and releases its hold.
    "CHAT_TURN_TIMEOUT_SECONDS": 900,
    # On PostgreSQL a chat turn's commit writes its session and messages with SQL built once
    # (rivya_api.chat.pg_commit): a new session and its messages in one INSERT, a session that
    # exists locked and its messages inserted unless a turn is in progress, none compiled by the
    # ORM per turn. False: the ORM's save, lock, check and bulk_create.
    "CHAT_TURN_COMMIT_SQL": True,
    # With CHAT_TURN_COMMIT_SQL, outside a transaction, on psycopg 3 with client-side binding, for a
    # turn without a key's spend limit: the commit's BEGIN, session lock, rows, hold, COMMIT and WAL
    # flush are sent as one query (rivya_api.chat.pg_commit, commit_batched). A refusal in it is
    # rolled back, a busy or stale turn commits an empty transaction; the commit above then decides.
    # A refused batch's statement, with the turn's messages, can reach the server log
    # (log_min_error_statement). False: BEGIN, each statement and COMMIT one round trip each.
    "CHAT_TURN_COMMIT_BATCHED": True,
    # On SQLite (the embedded configuration) a chat turn's rows are written by statements built
    # once (rivya_api.chat.sqlite_commit): a new session's INSERT and its messages' INSERT, or for a
    # session that exists one INSERT … WHERE the session is unchanged and not busy, in the plain
    # path's transaction (BEGIN IMMEDIATE, billing's hold, COMMIT). False: the ORM's save, read, check
    # and bulk_create.
    "CHAT_TURN_COMMIT_SQLITE": True,
    # On PostgreSQL a chat turn's end locks its reply with SQL built once and saves the reply, the
    # turn's other messages and the session's counters in one statement (rivya_api.chat.pg_finish).
    # False: the ORM's locking read and three UPDATEs.
    "CHAT_TURN_FINISH_SQL": True,
    # On SQLite (the embedded configuration) a chat turn's end reads its reply, session and account
    # and writes its three UPDATEs with statements built once (rivya_api.chat.sqlite_finish), in the
    # plain path's transaction; the reply's save sends no pre_save/post_save. False: the ORM's.
    "CHAT_TURN_FINISH_SQLITE": True,
    # With CHAT_TURN_FINISH_SQL and billing's PG_SETTLE, outside a transaction, on psycopg 3 with
    # client-side binding, for a finish that settles and whose caller names the turn's model (the
    # streaming runner does): BEGIN, the locking read, the settle, the UPDATEs, COMMIT and the WAL
    # flush are sent as one query (rivya_api.chat.pg_finish, finish_batched). Only a settle that
    # wrote moves the turn's rows; a refused settle (the hold lapsed) or a model not the session's
    # commits an empty transaction and the plain finish decides. Its statement holds the reply: one
    # that fails (a timeout, a deadlock) can reach the server log (log_min_error_statement).
    # False: BEGIN, each statement and COMMIT one round trip each.
    "CHAT_TURN_FINISH_BATCHED": True,
    # Chat streams: seconds of silence from the model before a keep-alive comment line.
    "CHAT_KEEPALIVE_SECONDS": 10,
    # Chat streams: a turn's events stay available for resume this long after it ends.
    "CHAT_STREAM_RETENTION_SECONDS": 300,
    # Chat streams: Redis URL for the event buffer and cross-process cancel ("" = this process only).
    "CHAT_STREAM_REDIS_URL": "",
    # Chat streams: Redis connections per event loop. A burst that needs more waits for one (up to
    # CHAT_STREAM_REDIS_POOL_WAIT_SECONDS) instead of failing, so no turn's events miss Redis.
    "CHAT_STREAM_REDIS_MAX_CONNECTIONS": 200,
    # Seconds a chat stream's Redis command waits for a free connection of that pool before it fails.
    "CHAT_STREAM_REDIS_POOL_WAIT_SECONDS": 30,
    # Chat streams: how long the Redis mirror gathers new events before it writes them, all turns'
    # together in one pipeline (each write is a system call and a Redis round trip). Only a follower
    # in another process waits for it; the live stream never does. 0: write on the next loop turn.
    # A turn's last events do not wait for it, and a turn ends once they are in Redis.
    "CHAT_STREAM_MIRROR_GATHER_SECONDS": 0.01,
    # Chat streams: the mirror's batch packed and sent by rivya_api.chat.redis_batch (one buffer, one
    # timeout for its replies) rather than through redis-py's pipeline. False: the pipeline.
    "CHAT_STREAM_MIRROR_PACKED": True,
    # Chat upstream sockets on plain asyncio (rivya_api.chat.providers.asyncio_network) rather than
    # httpcore's anyio backend: fewer steps per read of a streamed reply. False: httpcore's own.
    "CHAT_UPSTREAM_ASYNCIO_NETWORK": True,
    # Chat upstream replies' chunked bodies read off the socket (rivya_api.chat.providers.chunked_body,
    # on the asyncio sockets above) rather than through httpx, httpcore and h11 per chunk. False: httpx.
    "CHAT_UPSTREAM_RAW_BODY": True,
    # Chat upstream connections spread over several httpx clients per event loop, each turn on the
    # least busy (rivya_api.chat.providers.upstream_clients): httpcore's pool bookkeeping is quadratic
    # in one pool's connections. Sequential turns stay on the first client. False: one client.
    "CHAT_UPSTREAM_SHARDED_POOL": True,
    # A streamed chat response gives back the worker thread Django keeps for its request
    # (rivya_api.common.request_thread) instead of holding it, idle, while the stream is open.
    # False: the thread stays until the response ends, as Django does.
    "CHAT_STREAM_RELEASE_REQUEST_THREAD": True,
    # The model catalog: a list of model dicts (shape in rivya_api.catalog.spec), or the dotted
    # path of one. Empty by default (a system check warns); one line opts into the built-in
    # offline models: "rivya_api.catalog.local_models.LOCAL_MODELS".
    "MODELS": [],
    # --- Files (rivya_api.files) ---
    # Alias in Django's STORAGES holding file bytes: point it at any django-storages backend.
    "FILE_STORAGE": "default",
    # Folder (key prefix) inside that storage.
    "FILE_STORAGE_PREFIX": "rivya/files",
    # Largest accepted file per kind, in bytes (413 above). Keys left out keep these defaults.
    # Uploads are also bounded by MAX_REQUEST_BYTES for the whole request.
    "FILE_MAX_BYTES": {"image": 20 * 1024 * 1024, "audio": 25 * 1024 * 1024, "video": 60 * 1024 * 1024},
    # Images over this many pixels per frame are refused before decoding (decompression bombs).
    "FILE_IMAGE_MAX_PIXELS": 40_000_000,
    # Animated images: at most this many frames, and this many pixels over all frames.
    "FILE_IMAGE_MAX_FRAMES": 500,
    "FILE_IMAGE_MAX_TOTAL_PIXELS": 200_000_000,
    # Audio/video: frames decoded to prove the stream decodes (the whole container is demuxed).
    "FILE_AV_DECODE_FRAMES": 8,
    # Which kinds each purpose accepts. generation_output is for outputs stored by the API itself.
    "FILE_PURPOSE_KINDS": {
        "reference": ["image", "audio", "video"],
        "chat_attachment": ["image"],
        "generation_output": ["image", "audio", "video"],
    },
    # Seconds a file is kept, per purpose; then the periodic sweep deletes its bytes.
    "FILE_RETENTION_SECONDS": {
        "reference": 30 * 86400,
        "chat_attachment": 30 * 86400,
        "generation_output": 7 * 86400,
    },
    # Lifetime of a signed download URL (never beyond the file's own expiry).
    "FILE_URL_TTL_SECONDS": 3600,
    # Bearer token that may read /metrics (from RIVYA_METRICS_TOKEN); empty: /metrics is a 404
    # and metrics are read from `manage.py rivya_metrics_server` on an internal address.
    "METRICS_TOKEN": "",
    # Generations (rivya_api.generations): how long a task is kept, counted from its submission
    # (its expires_at).
    "GENERATION_RETENTION": timedelta(days=7),
    # A submission's input and metadata, as JSON, at most this many bytes (UTF-8): they are
    # copied into the task's webhook events, whose size RIVYA_WEBHOOKS MAX_PAYLOAD_BYTES bounds.
    "GENERATION_USER_DATA_MAX_BYTES": 64 * 1024,
    # How long a queued task may wait for a worker: its deadline, and its hold's lease, while
    # queued (set again when the sweeper re-queues it). Past it the sweeper fails and releases it.
    "GENERATION_QUEUE_LEASE": timedelta(hours=1),
    # Django's PostgreSQL pool with CONN_HEALTH_CHECKS checks a connection with a round trip (an
    # empty query, counted as a transaction) on every checkout; rivya_api.common.pool_check does
    # that round trip only when the connection's last full check is older than this many seconds,
    # and in between checks libpq's state and that the socket is quiet. Keep it short: a server
    # that vanished without a goodbye (a failover behind the same address) leaves a quiet socket,
    # and a connection handed out in that window fails its first query. 0: the round trip every time.
    "DB_POOL_FULL_CHECK_EVERY": 2,
    # That check's round trip is a Sync message alone (libpq pipelines), which PostgreSQL answers as
    # it answers an empty query but counts as no transaction. False: psycopg_pool's empty query.
    "DB_POOL_CHECK_SYNC": True,
    # Run each provider in a child process that is killed at its model's time limit
    # (rivya_api.generations.isolation). False: in the worker, where the limit is only cooperative.
    "GENERATION_PROVIDER_PROCESS": True,
    # How many jobs one provider process serves before it is replaced (a process a job gave up
    # on — timeout, cancel, lost claim, crash — is killed and replaced at once). Reusing it saves
    # a fork, a join and a start per job (rivya_api.generations.provider_process). 1: a new
    # process per job.
    "GENERATION_PROVIDER_PROCESS_JOBS": 1000,
    # A Celery worker process starts its provider forkserver (and, with GENERATION_PROVIDER_PROCESS_JOBS
    # above 1, an idle provider process) in a thread as it starts, rather than in its first job
    # (rivya_api.generations.provider_process.warm_start). False: the first job starts them.
    "GENERATION_PROVIDER_WARM_START": True,
    # On PostgreSQL a generation's claim is one UPDATE ... RETURNING of the task and its account
    # (rivya_api.generations.pg_claim) instead of a locking SELECT and a save; its two guesses (the
    # deadline, the hold's next lease token) are checked, the plain path taking over when either is off.
    # False: the plain path.
    "GENERATION_CLAIM_SQL": True,
    # With GENERATION_CLAIM_SQL and RIVYA_BILLING["PG_HOLD_RENEW"], the claim's UPDATE and its hold's
    # lease are one statement (rivya_api.generations.pg_claim_hold: the hold's UPDATE joined to the
    # claimed row), one round trip fewer per job; what it does not write, the plain path decides.
    # False: the claim's UPDATE, then billing's renew.
    "GENERATION_CLAIM_HOLD_SQL": True,
    # On PostgreSQL a generation's success writes its outputs' rows, the task's conditional success
    # UPDATE and the outputs' links in one statement built once (rivya_api.generations.pg_succeed)
    # instead of three ORM statements compiled per job. False: the plain path.
    "GENERATION_SUCCEED_SQL": True,
    # On PostgreSQL (psycopg 3, outside a transaction) a generation's success is sent as one query,
    # BEGIN; <lock the task>; <settle, outputs, success, webhook event>; COMMIT; <WAL flush>
    # (rivya_api.generations.pg_finish), one round trip instead of six; what it does not write (a
    # cancel, a lost claim, a lapsed hold, an account with webhook endpoints) the plain path decides.
    # False: BEGIN, each statement and COMMIT one round trip each.
    "GENERATION_FINISH_BATCHED": True,
    # A Celery worker process sends live task updates through one long-lived event loop
    # (rivya_api.generations.live); False: a new loop (and Redis connection) per update.
    "LIVE_WORKER_LOOP": True,
    # With LIVE_WORKER_LOOP, a job's thread queues its live updates on that loop and goes on (sent
    # in order, each within 5 s, flushed at the process's shutdown) instead of waiting for Redis.
    # False: each update is waited for.
    "LIVE_WORKER_NO_WAIT": True,
    # A sweep that fails on one task retries it after a backoff (30 s, doubling); after this many
    # failures the task is failed and released without further ado (generation_abandon).
    "GENERATION_SWEEP_MAX_FAILURES": 5,
    # The lease a running job takes on its task's hold at its claim, renewed by each heartbeat and
    # progress report; once it lapses, billing's sweeper returns the hold and the run cannot charge.
    "GENERATION_RUN_LEASE": timedelta(minutes=10),
    # How often a running job's heartbeat writes its task's heartbeat_at and renews its hold's lease.
    # Keep it well under GENERATION_HEARTBEAT_TIMEOUT.
    "GENERATION_HEARTBEAT_INTERVAL": timedelta(seconds=10),
    # Running jobs' heartbeats are scheduled by one long-lived thread per process
    # (rivya_api.generations.heartbeat), each due beat on a short-lived thread (a job shorter than
    # the interval needs none), rather than a thread started and joined per job. False: a thread per job.
    "GENERATION_HEARTBEAT_SHARED": True,
    # A running task whose heartbeat is older than this is taken for dead by the sweeper (retried
    # once on a provider safe to retry, else failed as worker_lost); also added to the model's time
    # limit for a running task's deadline.
    "GENERATION_HEARTBEAT_TIMEOUT": timedelta(minutes=2),
    # A queued task no worker claimed within this (its broker message was lost) is queued again by
    # the sweeper.
    "GENERATION_REQUEUE_AFTER": timedelta(minutes=2),
    # Lists: items per page without ?limit=, and the largest ?limit= accepted.
    "PAGE_SIZE": 20,
    "MAX_PAGE_SIZE": 100,
    # Idempotency-Key (rivya_api.idempotency): how long a key's outcome is kept and
    # replayed, counted from the first request; expired records are purged hourly.
    "IDEMPOTENCY_RETENTION_SECONDS": 24 * 60 * 60,
    # How long a running request's claim on its key holds. A process that dies
    # mid-request leaves the key claimable again after this; it must exceed the
    # longest request, and long work renews it (services.idempotency_renew).
    "IDEMPOTENCY_LEASE_SECONDS": 300,
    # Retry-After (seconds) sent with 409 idempotency_key_in_flight.
    "IDEMPOTENCY_RETRY_AFTER_SECONDS": 1,
    # Response headers stored with the outcome and sent again on a replay.
    "IDEMPOTENCY_REPLAYED_HEADERS": ["Content-Type", "Location", "Rivya-Session-Id"],
}

IMPORT_STRINGS = ("ACCOUNT_FOR_USER", "ACCOUNT_IS_ACTIVE", "AUTHENTICATION_CLASSES", "THROTTLE_CLASSES", "MODELS")

api_settings = AppSettings("RIVYA_API", DEFAULTS, import_strings=IMPORT_STRINGS)
