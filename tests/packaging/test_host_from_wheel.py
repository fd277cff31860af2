"""A host project installs the built wheel into a fresh virtualenv and runs, outside this repository.

The host (``tests/packaging/host``) is copied to a temporary folder and run with the new
virtualenv's Python, so ``config``, ``tests`` and the checkout's apps are not importable: every
template, static file and migration must come from the wheel. Its account is its own
``orgs.Organization``; it has its own DRF view under a hostile global ``REST_FRAMEWORK``; it
added only the lines docs/integration.md asks for (no Celery app, one catalog line). The tier
runs ``check``, ``migrate``, ``collectstatic``, issues a key with ``rivya_bootstrap --account``,
serves the host with uvicorn and drives it over HTTP: ``GET /api/v1/credits``, a generation to
success (in-process background work), the settings, docs and Studio pages and the admin key
roll without template errors, and every static file those pages reference with 200.
Dependencies come from ``var/wheelhouse`` (``make test`` fills it), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.acceptance import generation_flow
from tests.packaging.conftest import ROOT
from tests.services import WHEELHOUSE

pytestmark = [pytest.mark.slow, pytest.mark.wheelhouse, pytest.mark.timeout(600)]

HOST = Path(__file__).resolve().parent / "host"
SNAPSHOT = ROOT / "tests" / "rivya_api" / "openapi.snapshot.json"
PAGES = [
    "/settings/api-keys",
    "/settings/credits",
    "/settings/webhooks",
    "/settings/generations",
    "/studio/",
    "/docs/",
    "/docs/quickstart",
    "/docs/authentication",
    "/docs/credits",
    "/docs/models",
    "/api/v1/docs",
]
STATIC_REFERENCE = re.compile(r"""(?:href|src)=["'](/static/[^"'?#]+)""")


class Host:
    """The host's folder and virtualenv; ``run`` is a command there, never in the repository."""

    def __init__(self, root: Path) -> None:
        self.site = root / "site"
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_CERT", "PIP_DEFAULT_TIMEOUT")
        self.env = {key: os.environ[key] for key in keep if key in os.environ}
        self.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [str(self.python), *args], cwd=self.site, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def manage(self, *args: str) -> str:
        return self.run("manage.py", *args)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, built) -> Host:
    root = tmp_path_factory.mktemp("host-from-wheel")
    assert ROOT not in root.parents, "the host must live outside the repository"
    host = Host(root)
    shutil.copytree(HOST, host.site, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    subprocess.run(["python3", "-m", "venv", str(host.venv)], check=True, env=host.env, timeout=120)
    host.run(
        "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE),
        f"{built.wheel}[channels]", "uvicorn", "whitenoise", timeout=600,
    )  # fmt: skip
    return host


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_apps_come_from_the_wheel_only(host):
    where = host.run("-c", "import rivya_api, rivya_core; print(rivya_api.__file__); print(rivya_core.__version__)")
    path, version = where.split()
    assert str(host.venv) in path, path
    from rivya_core import __version__

    assert version == __version__
    for repository_only in ("config", "tests", "bench"):
        probe = subprocess.run(
            [str(host.python), "-c", f"import {repository_only}"], cwd=host.site, env=host.env, capture_output=True
        )
        assert probe.returncode != 0, f"{repository_only} is importable in the host"


def test_check_migrate_collectstatic_and_a_key_by_account(host):
    assert "System check identified no issues" in host.manage("check", "--fail-level", "WARNING")
    host.manage("migrate", "--noinput")
    assert "static files copied" in host.manage("collectstatic", "--noinput")
    host.manage(
        "shell", "-c",
        "from django.contrib.auth.models import User; from orgs.models import Organization; "
        "org = Organization.objects.create(slug='acme', name='Acme'); "
        "admin = User.objects.create_superuser('admin', 'admin@example.com', 'pw-admin-1'); org.members.add(admin)",
    )  # fmt: skip
    secret = host.manage("rivya_bootstrap", "--account", "acme", "--account-field", "slug", "--credits", "100")
    (host.site / "key.txt").write_text(secret.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server(host):
    port = free_port()
    log = (host.site / "server.log").open("w")
    process = subprocess.Popen(
        [str(host.venv / "bin" / "uvicorn"), "orgsite.asgi:application", "--port", str(port), "--no-access-log"],
        cwd=host.site,
        env=host.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/v1/openapi.json", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, (host.site / "server.log").read_text()
        assert time.monotonic() < deadline, (host.site / "server.log").read_text()
        time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_the_api_with_a_key(host, server):
    secret = (host.site / "key.txt").read_text()
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        credits = client.get("/api/v1/credits")
        assert credits.status_code == 200, credits.text
        assert credits.json()["available"] == 100
        task = generation_flow(client, timeout=120)  # in-process background work, no host Celery app
        assert task["credits"]["charged"] > 0
        document = client.get("/api/v1/openapi.json").json()
        assert document == json.loads(SNAPSHOT.read_text()), "the host's settings changed the API's document"
        unauthenticated = httpx.get(f"{server}/api/v1/credits")
        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["error"]["code"] == "missing_api_key"
        own = httpx.get(f"{server}/org-api/me")
        assert own.status_code == 403, "the host's own DRF view keeps its IsAuthenticated"
        assert "detail" in own.json(), "and DRF's own error body"


@contextmanager
def login(server: str) -> Iterator[httpx.Client]:
    """A browser-like client logged in through the admin's login page (the host's LOGIN_URL)."""
    with httpx.Client(base_url=server, timeout=30) as browser:
        browser.get("/admin/login/")
        response = browser.post(
            "/admin/login/",
            data={"username": "admin", "password": "pw-admin-1", "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": f"{server}/admin/login/"},
        )
        assert response.status_code == 302, response.text[:500]
        yield browser


def test_pages_render_and_their_static_files_are_served(server):
    with login(server) as browser:
        tasks = browser.get("/settings/generations").text
        detail = re.search(r'href="(/settings/generations/task_[0-9A-Za-z]+)"', tasks)
        assert detail, "the API's generation is listed on the settings page"
        static = set()
        for path in [*PAGES, detail.group(1)]:
            response = browser.get(path)
            assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
            static |= set(STATIC_REFERENCE.findall(response.text))
        assert any("rivya_api/site" in url for url in static)
        assert any("rivya_api/pages" in url for url in static)
        for url in sorted(static):
            assert browser.get(url).status_code == 200, url
        own = browser.get("/org-api/me", headers={"Accept": "application/json"})
        assert own.json() == {"organizations": ["acme"]}


def test_the_admin_rolls_a_key(server):
    with login(server) as browser:
        changelist = browser.get("/admin/rivya_api/apikey/")
        assert changelist.status_code == 200
        key_pk = re.search(r'name="_selected_action" value="(\d+)"', changelist.text).group(1)
        rolled = browser.post(
            "/admin/rivya_api/apikey/",
            data={
                "action": "roll_keys",
                "_selected_action": key_pk,
                "grace": "1h",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Referer": f"{server}/admin/rivya_api/apikey/"},
        )
        assert rolled.status_code == 200, rolled.text[:500]
        assert re.search(r"rvya_sk_[A-Za-z0-9_\-]{20,}", rolled.text), "the new secret is shown once"
