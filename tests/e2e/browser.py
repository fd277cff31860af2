"""Browser test harness: the project under a real ASGI server, driven by Playwright and Chromium.

``live_asgi`` runs ``uvicorn config.asgi:application`` in a subprocess against
this test run's database (pytest-django's ``live_server`` is WSGI and threaded,
so it has no WebSockets). The server is self-contained: no ``REDIS_URL``, so it
uses the in-memory channel layer and runs background work in its own process,
as the embedded default does. Its upstream image service is a stand-in on a
real socket (``upstream``), whose answers each test controls, so a generation
can be held "running" until the test lets it finish.

Chromium is Debian's ``/usr/bin/chromium`` (Playwright's own browser download
does not work here). Screenshots go to ``test-artifacts/screenshots/`` (gitignored), the server's files to
``test-artifacts/media/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connections

from tests.rivya_api.generations.standin import StandInServer, stand_in_server
from tests.rivya_api.keys.subprocesses import ROOT, django_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
# Where the server stores files; a test that makes files for it to serve stores them here too.
SERVER_MEDIA_ROOT = ARTIFACTS / "media"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "mobile": {"width": 390, "height": 844}}
UPSTREAM_KEY = "upstream-test-key"
# The server's PostgreSQL sessions carry this name, so teardown can wait for them to end.
SERVER_APPLICATION_NAME = "rivya-browser-test-server"


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log: Path

    def api(self, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_healthy(server: LiveServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the ASGI server exited ({server.process.returncode}):\n{server.logs()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the ASGI server did not become healthy:\n{server.logs()}")


@pytest.fixture(scope="session")
def upstream() -> Iterator[StandInServer]:
    """The upstream image service the server's ``rivya-image-hd`` model calls."""
    with stand_in_server() as server:
        yield server


def _wait_for_server_sessions_to_end(django_db_blocker: Any, timeout: float = 10) -> None:
    """PostgreSQL ends a backend shortly after its client process exits; dropping the test
    database before then fails ("being accessed by other users"), so wait for it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = %s",
                    [SERVER_APPLICATION_NAME],
                )
                if cursor.fetchone()[0] == 0:
                    return
            time.sleep(0.1)


@pytest.fixture(scope="session")
def live_asgi(django_db_setup: Any, django_db_blocker: Any, upstream: StandInServer) -> Iterator[LiveServer]:
    # The test process binds the port and hands the socket over, so the URL is known up front.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    env = django_env(
        DEBUG="true",
        RIVYA_IN_PROCESS_BEAT="false",
        RIVYA_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        RIVYA_UPSTREAM_IMAGES_BASE_URL=f"{upstream.url}/v1",
        RIVYA_UPSTREAM_IMAGES_API_KEY=UPSTREAM_KEY,
        RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
        PGAPPNAME=SERVER_APPLICATION_NAME,
        MEDIA_ROOT=str(SERVER_MEDIA_ROOT),
    )
    env.pop("REDIS_URL", None)
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "asgi-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--fd",
                str(sock.fileno()),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
            pass_fds=[sock.fileno()],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sock.close()
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        _wait_for_server_sessions_to_end(django_db_blocker)


@contextmanager
def _async_unsafe_allowed() -> Iterator[None]:
    """Playwright's sync API keeps an event loop running in this thread, which Django's ORM
    takes for an async context; the test's own ORM calls are synchronous, so allow them, but
    only while Playwright runs (the rest of the suite keeps the safety check)."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def chromium(live_asgi: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with _async_unsafe_allowed(), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # With Playwright's loop running, Django keeps the test's ORM connections per
            # context, apart from the ones pytest-django closes: close them here, in that context.
            connections.close_all()


@pytest.fixture
def page(chromium: Any, live_asgi: LiveServer) -> Iterator[Any]:
    context = chromium.new_context(base_url=live_asgi.url, viewport=VIEWPORTS["desktop"])
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Every page runs under the Content-Security-Policy: anything it blocks is a broken page.
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors or CSP violations on the page: {errors}"


def log_in(page: Any, username: str, password: str, next_path: str = "/settings/api-keys") -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")


def screenshots(page: Any, name: str) -> list[Path]:
    """The current page, whole, at desktop and at mobile width; returns the files written.

    At each width the page must fit: no element wider than its container (``misfits``).
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    written = []
    original = page.viewport_size
    for label, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        written.append(path)
        problems = misfits(page)
        assert problems == [], f"{name} does not fit the {label} viewport (see {path}):\n" + "\n".join(problems)
    page.set_viewport_size(original)
    return written


# The widths every page must fit: a phone, a small laptop, a laptop, a desktop.
FIT_WIDTHS = (390, 1024, 1280, 1600)

# Elements allowed to scroll sideways inside themselves: code blocks, and what a page declares
# with ``data-scroll-x`` (a wide table of numbers, say). Their insides are not checked.
SCROLL_CONTAINERS = "pre, [data-scroll-x]"


def misfits(page: Any, scroll_containers: str = "") -> list[str]:
    """Every element wider than its container at the current width (empty when all fit).

    An element is too wide when its content overflows it (``scrollWidth > clientWidth``)
    and it clips or scrolls that overflow, or when its right edge lies beyond its
    parent's. Inside declared scroll containers (``SCROLL_CONTAINERS``) nothing is checked;
    hidden, absolutely positioned and visually-hidden elements are skipped. ``scroll_containers``
    adds selectors of boxes that may scroll sideways at this width.
    """
    return page.evaluate(
        """(scrollers) => {
            const out = [];
            const name = (el) => {
                let text = el.tagName.toLowerCase();
                if (el.id) text += "#" + el.id;
                if (el.classList.length) text += "." + [...el.classList].join(".");
                const row = el.closest("tr[data-task-id], tr[data-key-id], tr[data-entry-id], tr[data-endpoint-id]");
                const data = row ? row.dataset : null;
                if (data) text += ` in ${data.taskId || data.keyId || data.entryId || data.endpointId}`;
                return text;
            };
            if (document.documentElement.scrollWidth > window.innerWidth + 1)
                out.push(`page is ${document.documentElement.scrollWidth}px wide in ${window.innerWidth}px`);
            const skipped = new Set();
            const replaced = "img, video, audio, svg, canvas, iframe, input, select, textarea, button, option";
            for (const el of document.querySelectorAll("body *")) {
                if (skipped.has(el.parentElement) || (el.closest(scrollers) && !el.matches(scrollers))) {
                    skipped.add(el);
                    continue;
                }
                const style = getComputedStyle(el);
                if (style.display === "none" || style.position === "absolute" || style.position === "fixed"
                    || el.matches(".visually-hidden, details:not([open]) > :not(summary)")) {
                    skipped.add(el);
                    continue;
                }
                const box = el.getBoundingClientRect();
                if (box.width === 0 && box.height === 0) continue;
                const ellipsis = style.textOverflow === "ellipsis";
                if (!el.matches(scrollers) && !el.matches(replaced) && !ellipsis && style.overflowX !== "visible"
                    && el.scrollWidth > el.clientWidth + 1)
                    out.push(`${name(el)} clips or scrolls: ${el.scrollWidth}px of content in ${el.clientWidth}px`);
                const parent = el.parentElement;
                if (!parent || parent === document.body.parentElement) continue;
                const outer = parent.getBoundingClientRect();
                const pad = parseFloat(getComputedStyle(parent).borderRightWidth) || 0;
                const limit = Math.round(outer.right - pad);
                if (box.right > outer.right - pad + 1)
                    out.push(`${name(el)} ends at ${Math.round(box.right)}px, past ${name(parent)} (${limit}px)`);
            }
            return out;
        }""",
        ", ".join(filter(None, [SCROLL_CONTAINERS, scroll_containers])),
    )


def assert_fits(
    page: Any, name: str, width: int, *, height: int = 900, strict: bool = True, scroll_containers: str = ""
) -> list[str]:
    """Show the page at ``width``, keep a full-page screenshot, and check that everything fits.

    The screenshot is ``test-artifacts/screenshots/<name>-<width>.png``. With ``strict`` a misfit
    fails here; otherwise the misfits are returned (so a test can report every page at once).
    """
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(50)
    path = SCREENSHOTS / f"{name}-{width}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    problems = misfits(page, scroll_containers)
    if strict:
        assert problems == [], f"{name} does not fit at {width}px (see {path}):\n" + "\n".join(problems)
    return problems
