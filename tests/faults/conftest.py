"""Fixtures of the fault tests: one private PostgreSQL + Redis per session, one stack per test.

The servers and stacks live in a temporary directory that is removed at the end
of the session, whatever happened; a failed test prints the tail of each stack
process's log.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import Environment, Stack, missing_tools
from tests.services import services_required

# One line per request of the load would drown the figures the tests print.
logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def fault_environment() -> Iterator[Environment]:
    """A private PostgreSQL cluster and Redis server with a migrated template database."""
    reason = missing_tools()
    if reason:
        if services_required():
            pytest.fail(f"RIVYA_TEST_REQUIRE_SERVICES=1 but the fault tests {reason}", pytrace=False)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="rivya-faults-"))
    root.chmod(0o755)  # the cluster runs as the postgres user when we are root
    env = Environment(root)
    try:
        env.start()
        yield env
    finally:
        env.stop()
        if os.environ.get("RIVYA_FAULTS_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


_redis_dbs = itertools.cycle(range(4))


@pytest.fixture
def make_stack(fault_environment: Environment, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``make_stack(**kwargs)`` -> a started ``Stack`` on a fresh database; stopped after the test."""
    stacks: list[Stack] = []

    def make(roles: tuple[str, ...] = ("web", "worker", "beat"), **kwargs: Any) -> Stack:
        database_url = fault_environment.database(request.node.name)
        stack = fault_environment.stack(
            name=request.node.name, database_url=database_url, redis_db=next(_redis_dbs), **kwargs
        )
        stacks.append(stack)
        return stack.start(roles=roles)

    yield make
    failed = any(getattr(request.node, f"rep_{when}", None) and getattr(request.node, f"rep_{when}").failed
                 for when in ("setup", "call"))  # fmt: skip
    for stack in stacks:
        stack.stop()
        if failed:
            print(f"\n===== stack logs ({stack.root})\n{stack.logs()}")  # noqa: T201


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    return make_stack()
