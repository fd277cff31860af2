"""Traffic for the fault and soak tests, and the books checked after it.

``Tenants`` makes funded accounts (several keys each) and webhook endpoints at a
local receiver. ``Load`` sends a steady, mixed stream of API requests from a
few threads at a fixed rate for a bounded time, the way clients would: POSTs
carry an ``Idempotency-Key`` and are retried with the same key on a transport
error, a 5xx or a 409, as the SDKs do. Every attempt is recorded as an
``Outcome``. ``Books`` waits for the stack to drain and then checks, from the
database and the receiver, that no task, event or credit was lost or counted
twice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from standardwebhooks import Webhook

from tests import media
from tests.faults.harness import Stack, wait_until
from tests.rivya_webhooks.receiver import Receiver

MEDIA_KINDS = ("image", "audio", "video")
TERMINAL = ("succeeded", "failed", "canceled")
# A POST is retried with the same Idempotency-Key on these (and on transport errors), like the SDKs;
# a 409 only when it says the first attempt is still in flight.
RETRY_STATUSES = {429, 500, 502, 503, 504}
IN_FLIGHT = "idempotency_key_in_flight"
BODY_KEPT = 64_000  # a whole chat stream fits; media are never in an API answer's body
CHAT_MODEL = "rivya-chat-slow-1"  # tests/faults/stack_settings.py: one output token costs one credit
CHAT_PROMPTS = ("tell me about kites", "and the wind?", "how long is the string", "which colour flies best")


# --- who sends ---------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    id: str
    path: str
    secret: str
    event_types: list[str]


@dataclass
class Tenant:
    username: str
    secrets: list[str]
    granted: int
    endpoints: list[Endpoint] = field(default_factory=list)
    account_id: int = 0


class Tenants:
    """Funded accounts with ``keys`` API keys each and webhook endpoints at ``receiver``."""

    def __init__(self, stack: Stack, receiver: Receiver) -> None:
        self.stack = stack
        self.receiver = receiver
        self.tenants: list[Tenant] = []

    def add(self, username: str, *, credits: int, keys: int = 2, endpoints: Iterable[list[str]] = ()) -> Tenant:
        secrets = [self.stack.bootstrap(username, credits=credits if index == 0 else 0) for index in range(keys)]
        tenant = Tenant(username=username, secrets=secrets, granted=credits)
        digest = hashlib.sha256(secrets[0].encode()).hexdigest()  # how keys are stored (rivya_api.keys.tokens)
        tenant.account_id = self.stack.sql("SELECT account_id FROM rivya_api_apikey WHERE key_hash = %s", [digest])[0][
            0
        ]
        with self.stack.client(secrets[0]) as client:
            for index, event_types in enumerate(endpoints):
                path = f"/hook/{username}/{index}"
                response = client.post(
                    "/api/v1/webhooks", json={"url": self.receiver.url(path), "event_types": event_types}
                )
                assert response.status_code == 201, response.text
                body = response.json()
                tenant.endpoints.append(Endpoint(body["id"], path, body["secret"], event_types))
        self.tenants.append(tenant)
        return tenant

    def __iter__(self):
        return iter(self.tenants)


# --- what is sent ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    op: str
    started: float
    elapsed: float
    status: int | None
    error: str | None = None
    content_type: str = ""
    body: bytes = b""
    request_id: str = ""
    replayed: bool = False

    @property
    def server_error(self) -> bool:
        return self.status is not None and self.status >= 500

    def clean(self) -> bool:
        """An answer in the API's shape: JSON for every error, the error body, its request id."""
        if self.status is None:
            return True  # no answer at all (the connection was refused or cut): nothing malformed was said
        if self.status < 400:
            return True
        if not self.content_type.startswith("application/json"):
            return False
        try:
            error = json.loads(self.body)["error"]
        except (ValueError, KeyError, TypeError):
            return False
        # A replay (Idempotent-Replayed) repeats the first answer byte for byte, its request id included.
        same_request = self.replayed or error.get("request_id") == self.request_id
        return bool(error.get("code")) and same_request and "Traceback" not in str(error)

    @property
    def code(self) -> str:
        try:
            return json.loads(self.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return ""


@dataclass
class ChatTurn:
    """A chat turn a client sent, and the usage it saw at the end of the answer (None: it saw no end)."""

    key: str
    tenant: Tenant
    mode: str  # "stream", "json" or "dropped" (the client hung up mid-stream and resumed)
    session_id: str = ""
    usage: dict[str, int] | None = None
    follow_up: bool = False


@dataclass
class Submission:
    task_id: str
    tenant: Tenant
    model: str
    price: int
    key: str


def new_key() -> str:
    return f"faults-{uuid.uuid4().hex}"


def minimal_input(model: dict[str, Any]) -> dict[str, Any]:
    """The cheapest valid input for a model's ``parameters``: the prompt and the smallest sizes."""
    properties = model["parameters"].get("properties", {})
    values: dict[str, Any] = {"prompt": "a small red kite over the sea"}
    for name in ("width", "height"):
        if "minimum" in properties.get(name, {}):
            values[name] = properties[name]["minimum"]
    if "duration" in properties:
        values["duration"] = properties["duration"].get("minimum", 1)
    if "fps" in properties:
        values["fps"] = properties["fps"].get("minimum", 8)
    return values


class Load:
    """A steady stream of mixed requests: ``rate`` per second from ``threads`` threads, for at most ``seconds``.

    ``mix`` weighs the operations (names of the ``op_*`` methods). A ticket is
    issued every ``1/rate`` seconds; a ticket no thread is free to take within a
    second is dropped and counted (``dropped``), so a stalled stack never builds
    an unbounded backlog. ``stop()`` ends it early.
    """

    def __init__(
        self,
        stack: Stack,
        tenants: Tenants,
        *,
        rate: float,
        seconds: float,
        mix: dict[str, int],
        models: list[dict[str, Any]],
        threads: int = 6,
        seed: int = 14,
        timeout: float = 30,
    ) -> None:
        self.stack = stack
        self.tenants = tenants
        self.rate = rate
        self.seconds = seconds
        self.mix = mix
        self.models = models
        self.threads = threads
        self.timeout = timeout
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.submissions: list[Submission] = []
        self.chat_turns: list[ChatTurn] = []
        self.idle_sessions: dict[str, list[str]] = defaultdict(list)  # per tenant; a turn takes one out
        self.keys_sent: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.tickets: queue.Queue[str] = queue.Queue(maxsize=threads)
        self.dropped = 0
        self.started_at = 0.0
        self._threads: list[threading.Thread] = []
        self._model_cycle = itertools.cycle(models)
        self._keys = [(tenant, secret) for tenant in tenants for secret in tenant.secrets]
        self._next_key = 0

    # --- running ----------------------------------------------------------------------------------

    def start(self) -> Load:
        self.started_at = time.monotonic()
        self._threads = [threading.Thread(target=self._issue, name="load-issuer", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"load-{index}", daemon=True) for index in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def join(self) -> None:
        """Wait for the load to end (its time is up or ``stop()``), every request answered or timed out."""
        for thread in self._threads:
            thread.join(self.seconds + self.timeout * 4 + 60)
        assert not any(thread.is_alive() for thread in self._threads), "load threads did not finish"

    def run(self) -> Load:
        self.start()
        self.join()
        return self

    def _issue(self) -> None:
        names = list(self.mix)
        weights = [self.mix[name] for name in names]
        deadline = self.started_at + self.seconds
        next_at = self.started_at
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                with self.rng_lock:
                    name = self.rng.choices(names, weights)[0]
                try:
                    self.tickets.put(name, timeout=1)
                except queue.Full:
                    with self.lock:
                        self.dropped += 1
                next_at += 1 / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            self.stopping.set()

    def _work(self) -> None:
        clients: dict[str, httpx.Client] = {}
        try:
            while True:
                try:
                    name = self.tickets.get(timeout=0.2)
                except queue.Empty:
                    if self.stopping.is_set():
                        return
                    continue
                with self.lock:
                    tenant, secret = self._keys[self._next_key % len(self._keys)]
                    self._next_key += 1
                client = clients.get(secret)
                if client is None:
                    client = clients[secret] = self.stack.client(secret, timeout=self.timeout)
                getattr(self, f"op_{name}")(client, tenant)
        finally:
            for client in clients.values():
                client.close()

    def add_key(self, tenant: Tenant, secret: str) -> None:
        """Put a key issued while the load runs into the rotation."""
        with self.lock:
            tenant.secrets.append(secret)
            self._keys.append((tenant, secret))

    # --- recording --------------------------------------------------------------------------------------

    def request(self, client: httpx.Client, op: str, method: str, path: str, **kwargs: Any) -> Outcome:
        started = time.monotonic()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            outcome = Outcome(op, started, time.monotonic() - started, None, error=type(exc).__name__)
        else:
            outcome = Outcome(
                op,
                started,
                time.monotonic() - started,
                response.status_code,
                content_type=response.headers.get("content-type", ""),
                body=response.content[:BODY_KEPT],
                request_id=response.headers.get("x-request-id", ""),
                replayed=response.headers.get("idempotent-replayed") == "true",
            )
        self._record(outcome)
        return outcome

    def post_idempotent(
        self, client: httpx.Client, op: str, path: str, *, key: str | None = None, budget: float = 90, **kwargs: Any
    ) -> Outcome:
        """POST with an Idempotency-Key (fresh unless given), retried with that key (backing off) until final."""
        key = key or new_key()
        headers = {**kwargs.pop("headers", {}), "Idempotency-Key": key}
        deadline = time.monotonic() + budget
        delay = 0.5
        while True:
            outcome = self.request(client, op, "POST", path, headers=headers, **kwargs)
            retry = (
                outcome.status is None
                or outcome.status in RETRY_STATUSES
                or (outcome.status == 409 and outcome.code == IN_FLIGHT)
            )
            if not retry or time.monotonic() + delay > deadline:
                return outcome
            time.sleep(delay)
            delay = min(delay * 2, 4)

    # --- operations -------------------------------------------------------------------------------------

    def _submit(
        self, client: httpx.Client, tenant: Tenant, model: dict[str, Any], input: dict[str, Any], *, wait: int = 0
    ) -> Submission | None:
        """POST a generation under a fresh key; the accepted task (200 when ``Prefer: wait`` saw it end)."""
        key = new_key()
        # The key rides along in metadata, so the database tells which key each task came from.
        body = {"model": model["id"], "input": input, "metadata": {"key": key}}
        headers = {"Prefer": f"wait={wait}"} if wait else {}
        with self.lock:
            self.keys_sent.append(key)
        outcome = self.post_idempotent(client, "submit", "/api/v1/generations", key=key, json=body, headers=headers)
        if outcome.status not in (200, 202):
            return None
        task = json.loads(outcome.body)
        submission = Submission(task["id"], tenant, model["id"], task["credits"]["reserved"], key)
        with self.lock:
            self.submissions.append(submission)
        return submission

    def _slow_model(self) -> dict[str, Any] | None:
        return next((m for m in self.models if m["id"] == "rivya-slow-1"), None)

    def op_submit(self, client: httpx.Client, tenant: Tenant, *, wait: int = 0) -> None:
        with self.lock:
            model = next(self._model_cycle)
        self._submit(client, tenant, model, minimal_input(model), wait=wait)

    def op_submit_wait(self, client: httpx.Client, tenant: Tenant) -> None:
        """A submission that long-polls (``Prefer: wait``): the connection stays open while the task runs."""
        self.op_submit(client, tenant, wait=10)

    def op_submit_slow_wait(self, client: httpx.Client, tenant: Tenant) -> None:
        """A long-poll on the slow model (3 s): a request that is in flight for seconds, every time."""
        slow = self._slow_model()
        assert slow is not None, "the stack lists no rivya-slow-1"
        self._submit(client, tenant, slow, {**minimal_input(slow), "seconds": 3}, wait=10)

    def _some_task(self) -> Submission | None:
        with self.lock:
            if not self.submissions:
                return None
            with self.rng_lock:
                return self.rng.choice(self.submissions[-20:])

    def op_poll(self, client: httpx.Client, tenant: Tenant) -> None:
        submission = self._some_task()
        if submission is None or submission.tenant is not tenant:
            self.request(client, "list", "GET", "/api/v1/generations", params={"limit": 5})
            return
        self.request(client, "poll", "GET", f"/api/v1/generations/{submission.task_id}")

    def op_cancel(self, client: httpx.Client, tenant: Tenant) -> None:
        """Cancel one of the tenant's recent tasks (usually finished already: a 409), or a slow one just
        submitted, which ends canceled whether it was still queued or already running."""
        submission = self._some_task()
        slow = self._slow_model()
        if slow is not None and (submission is None or submission.tenant is not tenant or self.rng.random() < 0.7):
            submission = self._submit(client, tenant, slow, {**minimal_input(slow), "seconds": 3})
            if submission is None:
                return
            time.sleep(self.rng.uniform(0, 1.5))  # sometimes still queued, sometimes running
        if submission is None or submission.tenant is not tenant:
            return
        self.post_idempotent(client, "cancel", f"/api/v1/generations/{submission.task_id}/cancel")

    def op_chat(self, client: httpx.Client, tenant: Tenant) -> None:
        """A chat turn: streamed, plain JSON, or streamed and dropped by the client, then resumed.

        A quarter continue one of the tenant's finished sessions (taken out of the pool while in use,
        since a session runs one turn at a time).
        """
        with self.rng_lock:
            mode = self.rng.choices(["stream", "json", "dropped"], [6, 2, 2])[0]
            prompt = self.rng.choice(CHAT_PROMPTS)
            follow_up = self.rng.random() < 0.25
        with self.lock:
            sessions = self.idle_sessions[tenant.username]
            session_id = sessions.pop() if follow_up and sessions else ""
        turn = ChatTurn(new_key(), tenant, mode, session_id, follow_up=bool(session_id))
        body = {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 48,
            "metadata": {"key": turn.key},
            "stream": mode != "json",
            **({"session_id": session_id} if session_id else {}),
            **({"stream_options": {"include_usage": True}} if mode != "json" else {}),
        }
        with self.lock:
            self.chat_turns.append(turn)
        if mode == "dropped":
            self._chat_dropped(client, turn, body)
        else:
            outcome = self.post_idempotent(client, f"chat_{mode}", "/api/v1/chat/completions", key=turn.key, json=body)
            if outcome.status == 200:
                turn.session_id, turn.usage = _chat_answer(outcome.body, streamed=mode == "stream")
        if turn.usage is not None:
            with self.lock:
                self.idle_sessions[tenant.username].append(turn.session_id)

    def _chat_dropped(self, client: httpx.Client, turn: ChatTurn, body: dict[str, Any]) -> None:
        """Read a few events, hang up, then resume from the last event id seen until ``[DONE]``."""
        started = time.monotonic()
        headers = {"Idempotency-Key": turn.key}
        last_id = ""
        try:
            with client.stream("POST", "/api/v1/chat/completions", json=body, headers=headers) as response:
                status, request_id = response.status_code, response.headers.get("x-request-id", "")
                turn.session_id = response.headers.get("rivya-session-id", "")
                if status != 200:
                    response.read()
                    self._record(Outcome("chat_dropped", started, time.monotonic() - started, status,
                                         content_type=response.headers.get("content-type", ""),
                                         body=response.content[:BODY_KEPT], request_id=request_id))  # fmt: skip
                    return
                for line in itertools.islice(response.iter_lines(), 8):
                    if line.startswith("id: "):
                        last_id = line[4:]
        except httpx.HTTPError as exc:
            self._record(Outcome("chat_dropped", started, time.monotonic() - started, None, error=type(exc).__name__))
            return
        self._record(Outcome("chat_dropped", started, time.monotonic() - started, 200))
        if not turn.session_id:
            return
        resumed = self.request(
            client, "chat_resume", "GET", f"/api/v1/chat/sessions/{turn.session_id}/stream",
            headers={"Last-Event-ID": last_id} if last_id else {},
        )  # fmt: skip
        if resumed.status == 200:
            _, turn.usage = _chat_answer(resumed.body, streamed=True)

    def _record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def op_models(self, client: httpx.Client, tenant: Tenant) -> None:
        self.request(client, "models", "GET", "/api/v1/models")

    def op_events(self, client: httpx.Client, tenant: Tenant) -> None:
        self.request(client, "events", "GET", "/api/v1/webhook-events", params={"limit": 10})

    def op_webhooks(self, client: httpx.Client, tenant: Tenant) -> None:
        self.request(client, "webhooks", "GET", "/api/v1/webhooks")

    def op_upload(self, client: httpx.Client, tenant: Tenant) -> None:
        files = {"file": ("sketch.png", media.png((48, 32)), "image/png")}
        self.post_idempotent(client, "upload", "/api/v1/files", files=files, data={"purpose": "reference"})

    # --- figures ----------------------------------------------------------------------------------------

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.started < end]

    def summary(self) -> dict[str, Any]:
        by_op: dict[str, Counter] = defaultdict(Counter)
        for outcome in self.outcomes:
            by_op[outcome.op][outcome.status if outcome.status is not None else outcome.error] += 1
        return {
            "requests": len(self.outcomes),
            "dropped_tickets": self.dropped,
            "submitted_tasks": len(self.submissions),
            "by_op": {op: dict(sorted(counts.items(), key=str)) for op, counts in sorted(by_op.items())},
        }

    def latencies(self) -> dict[str, dict[str, float]]:
        """Milliseconds at the 50th, 95th and 99th percentile, by operation (answered requests only)."""
        by_op: dict[str, list[float]] = defaultdict(list)
        for outcome in self.outcomes:
            if outcome.status is not None:
                by_op[outcome.op].append(outcome.elapsed * 1000)
        figures = {}
        for op, values in sorted(by_op.items()):
            values.sort()
            figures[op] = {"n": len(values)} | {
                f"p{round(q * 100)}": round(values[min(len(values) - 1, int(q * len(values)))], 1)
                for q in (0.5, 0.95, 0.99)
            }
        return figures


# --- the books ---------------------------------------------------------------------------------------


class Books:
    """What the stack's database and the receiver say once the work has drained."""

    def __init__(self, stack: Stack, tenants: Tenants, receiver: Receiver) -> None:
        self.stack = stack
        self.tenants = tenants
        self.receiver = receiver

    def drain(self, timeout: float = 180) -> float:
        """Wait until no task is queued or running and no delivery is pending; returns the seconds it took."""
        started = time.monotonic()

        def idle() -> bool:
            (open_tasks,) = self.stack.sql(
                "SELECT count(*) FROM rivya_api_generationtask WHERE status IN ('queued', 'running')"
            )[0]
            (pending,) = self.stack.sql("SELECT count(*) FROM rivya_webhooks_webhookdelivery WHERE state = 'pending'")[
                0
            ]
            return open_tasks == 0 and pending == 0

        try:
            wait_until(idle, timeout=timeout, interval=1, what="every task and delivery to finish")
        except AssertionError:
            raise
        except Exception as exc:
            tasks = self.stack.sql(
                "SELECT public_id, model, status, progress, attempts, queued_at, heartbeat_at "
                "FROM rivya_api_generationtask WHERE status IN ('queued', 'running') ORDER BY id LIMIT 10"
            )
            deliveries = self.stack.sql(
                "SELECT d.public_id, d.attempts_count, d.next_attempt_at, d.dispatched_for, d.last_error "
                "FROM rivya_webhooks_webhookdelivery d WHERE d.state = 'pending' ORDER BY d.id LIMIT 10"
            )
            raise AssertionError(f"{exc}\nopen tasks: {tasks}\npending deliveries: {deliveries}") from exc
        return time.monotonic() - started

    def check_tasks(self, submissions: list[Submission]) -> dict[str, Any]:
        """Every accepted task is terminal, once; money on each matches its outcome."""
        rows = self.stack.sql(
            "SELECT public_id, status, price, charged, refunded, attempts, error_code FROM rivya_api_generationtask"
        )
        tasks = {row[0]: row for row in rows}
        accepted = {s.task_id: s for s in submissions}
        missing = sorted(set(accepted) - set(tasks))
        assert not missing, f"accepted tasks not in the database: {missing[:10]}"
        by_status = Counter(tasks[t][1] for t in accepted)
        for task_id, (_, status, price, charged, refunded, _, _) in tasks.items():
            assert status in TERMINAL, (task_id, status)
            if status == "succeeded":
                assert (charged, refunded) == (price, 0), (task_id, status, price, charged, refunded)
            else:
                assert (charged, refunded) == (0, price), (task_id, status, price, charged, refunded)
        for task_id, submission in accepted.items():
            assert tasks[task_id][2] == submission.price, (task_id, tasks[task_id][2], submission.price)
        return {"tasks": len(tasks), "accepted_by_clients": len(accepted), "by_status": dict(by_status)}

    def check_idempotency(self, load: Load) -> dict[str, Any]:
        """No Idempotency-Key ran twice: one task per key, and it is the task the client was answered with."""
        rows = self.stack.sql(
            "SELECT metadata->>'key', public_id FROM rivya_api_generationtask WHERE metadata ? 'key' ORDER BY id"
        )
        by_key: dict[str, list[str]] = defaultdict(list)
        for key, task_id in rows:
            by_key[key].append(task_id)
        doubled = {key: tasks for key, tasks in by_key.items() if len(tasks) > 1}
        assert not doubled, f"keys that made more than one task: {dict(list(doubled.items())[:5])}"
        unknown = set(by_key) - set(load.keys_sent)
        assert not unknown, f"tasks from keys no client sent: {sorted(unknown)[:5]}"
        for submission in load.submissions:
            assert by_key[submission.key] == [submission.task_id], (submission.key, by_key[submission.key])
        answered = {s.key for s in load.submissions}
        # Accepted by the server, but the client gave up before hearing so (a retry with the key would tell it).
        unanswered = sorted(set(by_key) - answered)
        return {"keys": len(load.keys_sent), "tasks": len(rows), "accepted_but_unanswered": len(unanswered)}

    def check_money(self) -> dict[str, Any]:
        """Ledger replays clean; per wallet nothing held, and settled = generations + chat turns charged.

        The balance is then what was granted minus those charges.
        """
        done = self.stack.manage("rivya_ledger_check")
        assert done.returncode == 0, f"rivya_ledger_check: {done.stdout}{done.stderr}"
        pending = self.stack.sql("SELECT reference, amount FROM rivya_billing_hold WHERE state = 'pending'")
        assert not pending, f"holds still pending: {pending[:10]}"
        figures = {}
        for tenant in self.tenants:
            balance, held = self.stack.sql(
                "SELECT balance, held FROM rivya_billing_wallet WHERE account_id = %s", [tenant.account_id]
            )[0]
            (charged,) = self.stack.sql(
                "SELECT coalesce(sum(charged), 0) FROM rivya_api_generationtask "
                "WHERE account_id = %s AND status = 'succeeded'",
                [tenant.account_id],
            )[0]
            (settled,) = self.stack.sql(
                "SELECT coalesce(sum(e.amount), 0) FROM rivya_billing_ledgerentry e "
                "JOIN rivya_billing_wallet w ON w.id = e.wallet_id WHERE w.account_id = %s AND e.type = 'settle'",
                [tenant.account_id],
            )[0]
            (chat_charged,) = self.stack.sql(
                "SELECT coalesce(sum(m.credits_charged), 0) FROM rivya_api_chatmessage m "
                "JOIN rivya_api_chatsession s ON s.id = m.session_id WHERE s.account_id = %s AND m.role = 'assistant'",
                [tenant.account_id],
            )[0]
            charged += chat_charged
            assert held == 0, (tenant.username, held)
            assert settled == charged, (tenant.username, settled, charged)
            assert balance == tenant.granted - charged, (tenant.username, balance, tenant.granted, charged)
            figures[tenant.username] = {
                "granted": tenant.granted,
                "charged": int(charged),
                "chat_charged": int(chat_charged),
                "balance": balance,
            }
        # One reservation and one resolution per task reference, never two.
        doubled = self.stack.sql(
            "SELECT reference, type, count(*) FROM rivya_billing_ledgerentry "
            "WHERE type IN ('reserve', 'settle', 'release', 'expire') GROUP BY reference, type HAVING count(*) > 1"
        )
        assert not doubled, f"ledger lines twice for one reference: {doubled[:10]}"
        return figures

    def check_chat(self, load: Load) -> dict[str, Any]:
        """Every chat turn ended, ran once per Idempotency-Key, and was charged exactly for its tokens.

        The price is computed here from the model's public pricing and the tokens the turn produced
        (rounded up to a credit, at least one), and matches what each client saw in its usage.
        """
        with self.stack.client(self.tenants.tenants[0].secrets[0]) as client:
            pricing = client.get(f"/api/v1/models/{CHAT_MODEL}").json()["pricing"]
        rows = self.stack.sql(
            "SELECT metadata->>'key', public_id, status, prompt_tokens, completion_tokens, credits_charged "
            "FROM rivya_api_chatmessage WHERE role = 'assistant' ORDER BY id"
        )
        by_key: dict[str, list[tuple]] = defaultdict(list)
        for row in rows:
            by_key[row[0]].append(row)
        doubled = {key: [r[1] for r in turns] for key, turns in by_key.items() if len(turns) > 1}
        assert not doubled, f"keys that ran more than one chat turn: {dict(list(doubled.items())[:5])}"
        assert set(by_key) <= {turn.key for turn in load.chat_turns}, "a chat turn no client sent"
        statuses = Counter(row[2] for row in rows)
        assert set(statuses) <= {"completed", "incomplete"}, statuses
        for _, turn_id, _, prompt, completion, charged in rows:
            thousandths = prompt * pricing["input_per_1k_tokens"] + completion * pricing["output_per_1k_tokens"]
            price = max(1 if prompt + completion else 0, -(-thousandths // 1000))
            assert charged == price, (turn_id, prompt, completion, charged, price)
        seen = 0
        for turn in load.chat_turns:
            if turn.usage is None:
                continue
            seen += 1
            (_, turn_id, _, prompt, completion, charged) = by_key[turn.key][0]
            assert (turn.usage["prompt_tokens"], turn.usage["completion_tokens"], turn.usage["credits"]) == (
                prompt, completion, charged
            ), (turn_id, turn.usage)  # fmt: skip
        return {
            "turns": len(rows),
            "sent": len(load.chat_turns),
            "by_mode": dict(Counter(turn.mode for turn in load.chat_turns)),
            "usage_seen_by_clients": seen,
            "session_follow_ups": sum(turn.follow_up for turn in load.chat_turns),
            "by_status": dict(statuses),
            "output_tokens": sum(row[4] for row in rows),
            "charged": sum(row[5] for row in rows),
        }

    def check_webhooks(self, *, allow_duplicates: bool) -> dict[str, Any]:
        """Each endpoint received every event it subscribes to, under one webhook-id each, signed."""
        received: dict[str, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
        for request in self.receiver.requests:
            received[request.path][request.headers["webhook-id"]].append(request.body)
        figures = {"deliveries": 0, "duplicates": 0, "events": 0}
        for tenant in self.tenants:
            events = self.stack.sql(
                "SELECT public_id, type FROM rivya_webhooks_webhookevent "
                "WHERE account_id = %s AND type <> 'webhook.test'",
                [tenant.account_id],
            )
            figures["events"] += len(events)
            for endpoint in tenant.endpoints:
                expected = {public_id for public_id, kind in events if _subscribed(endpoint.event_types, kind)}
                got = received.get(endpoint.path, {})
                assert set(got) == expected, (
                    endpoint.path,
                    f"missing {sorted(expected - set(got))[:5]}",
                    f"unexpected {sorted(set(got) - expected)[:5]}",
                )
                for webhook_id, bodies in got.items():
                    figures["deliveries"] += len(bodies)
                    figures["duplicates"] += len(bodies) - 1
                    assert len(set(bodies)) == 1, f"{webhook_id} delivered with different bodies"
            for request in self.receiver.requests:
                endpoint = next((e for e in tenant.endpoints if e.path == request.path), None)
                if endpoint is not None:
                    Webhook(endpoint.secret).verify(request.body, request.headers)
        if not allow_duplicates:
            assert figures["duplicates"] == 0, figures
        return figures

    def terminal_events_per_task(self) -> None:
        """Exactly one terminal event per terminal task (the outbox wrote it with the state change)."""
        rows = self.stack.sql(
            "SELECT data->>'id', count(*) FROM rivya_webhooks_webhookevent "
            "WHERE type IN ('generation.succeeded', 'generation.failed', 'generation.canceled') GROUP BY 1"
        )
        counts = dict(rows)
        tasks = [row[0] for row in self.stack.sql("SELECT public_id FROM rivya_api_generationtask")]
        wrong = {task: counts.get(task, 0) for task in tasks if counts.get(task, 0) != 1}
        assert not wrong, f"terminal events per task other than one: {dict(list(wrong.items())[:10])}"


def _chat_answer(body: bytes, *, streamed: bool) -> tuple[str, dict[str, int] | None]:
    """(session id, usage) from a chat answer; usage is None unless a stream reached ``[DONE]``."""
    if not streamed:
        answer = json.loads(body)
        return answer["session_id"], answer["usage"]
    data = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    if not data or data[-1] != "[DONE]":
        return "", None
    chunks = [json.loads(item) for item in data[:-1]]
    usage = next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)
    return chunks[0].get("session_id", "") if chunks else "", usage


def _subscribed(event_types: list[str], kind: str) -> bool:
    return "*" in event_types or kind in event_types


def media_models(stack: Stack, secret: str, *, exclude: Callable[[dict[str, Any]], bool] = lambda m: False) -> list:
    """The listed models of a media kind (every one the stack serves), as the API describes them."""
    with stack.client(secret) as client:
        response = client.get("/api/v1/models")
        assert response.status_code == 200, response.text
        return [m for m in response.json()["data"] if m["kind"] in MEDIA_KINDS and not exclude(m)]
