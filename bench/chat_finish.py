"""CPU of a chat turn's end (``chat_turn_finish``) in the calling thread, a setting on vs off, paired rounds.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<scratch db> .venv/bin/python bench/chat_finish.py \\
        [--switch RIVYA_API.CHAT_TURN_FINISH_BATCHED] [--turns 200] [--rounds 8]

Migrates the database it is given (use a scratch one), funds an account and, each round, starts
``--turns`` turns (prepare and commit, not measured) and finishes them as the streaming runner does
(``model_id`` named) with the switch on, then as many with it off (the order alternates by round).
Per finish: the thread's CPU (``time.thread_time``: the worker thread's share of a turn, Python,
psycopg and the socket calls), wall time and the queries sent. Prints each figure's median with
the switch on and off and the median of the pair differences (off minus on: what it saves).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def finishes(account: Any, model: Any, turns: int) -> dict[str, float]:
    """Start ``turns`` turns, then finish each; per finish: CPU and wall (µs) and queries, averaged."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from rivya_api.chat import services
    from rivya_api.chat.providers.base import ChatUsage

    plans = []
    for index in range(turns):
        messages = [services.NewMessage("user", f"Count for me, {index}.")]
        plan = services.chat_turn_prepare(account=account, model=model, messages=messages)
        services.chat_turn_commit(plan)
        plans.append(plan)
    cpu = wall = 0.0

    def finish(plan: Any) -> None:
        services.chat_turn_finish(
            turn_id=plan.turn_id, content="One, two, three.", finish_reason="stop", usage=ChatUsage(12, 6),
            model_id=plan.model_id,
        )  # fmt: skip

    for plan in plans[1:]:
        began_cpu, began = time.thread_time(), time.perf_counter()
        finish(plan)
        cpu += time.thread_time() - began_cpu
        wall += time.perf_counter() - began
    with CaptureQueriesContext(connection) as queries:  # counted apart: the capture costs CPU
        finish(plans[0])
    count = len(plans) - 1
    return {"cpu_us": cpu / count * 1e6, "wall_us": wall / count * 1e6, "queries": len(queries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switch", default="RIVYA_API.CHAT_TURN_FINISH_BATCHED")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    from rivya_api.catalog.selectors import catalog_model_get
    from rivya_billing.services import credits_grant
    from tests.factories import account_create

    call_command("migrate", verbosity=0)
    account = account_create(f"bench-finish-{os.getpid()}-{time.time_ns()}")
    credits_grant(account=account, amount=10**12, reference="bench-grant")
    model = catalog_model_get("rivya-chat-1")
    namespace, name = args.switch.split(".")
    finishes(account, model, 20)  # warm-up: statements built, connection open
    rounds: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for index in range(args.rounds):
        for value in (True, False) if index % 2 == 0 else (False, True):
            with override_settings(**{namespace: {**getattr(settings, namespace), name: value}}):
                rounds[value].append(finishes(account, model, args.turns))
    result: dict[str, Any] = {"switch": args.switch, "turns": args.turns, "rounds": args.rounds}
    for figure in ("cpu_us", "wall_us", "queries"):
        on = [r[figure] for r in rounds[True]]
        off = [r[figure] for r in rounds[False]]
        result[figure] = {
            "on_median": round(statistics.median(on), 1),
            "off_median": round(statistics.median(off), 1),
            "saved_median_of_pairs": round(statistics.median(b - a for a, b in zip(on, off, strict=True)), 1),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
