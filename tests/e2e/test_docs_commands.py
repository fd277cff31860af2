"""The documentation's commands, run as written against a live server (issue 22, finding 8).

The quick start's shell blocks run in ``sh`` with a PATH that holds only what a stock
Debian shell has plus curl, the one tool the page asks for (no ``uuidgen``, no ``jq``,
no Python). The webhook page's Python receiver runs as printed and verifies a real,
signed delivery with ``standardwebhooks``.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from rivya_api.accounts import account_get_or_create_for_username
from rivya_api.keys.services import api_key_create
from rivya_billing.selectors import wallet_entries
from rivya_billing.services import credits_grant
from tests.e2e.browser import LiveServer
from tests.services import services_required

pytestmark = pytest.mark.django_db(transaction=True)

# What the quick start may use: a POSIX shell, coreutils and grep (every Debian has them) and curl.
STOCK_TOOLS = ("sh", "head", "od", "tr", "grep", "cut", "cat")


def code_blocks(page: str) -> list[str]:
    return [html.unescape(block) for block in re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", page, re.S)]


@pytest.fixture
def funded_key() -> tuple[object, str]:
    account, _, _ = account_get_or_create_for_username(username="docs-reader")
    credits_grant(account=account, amount=100, reference="docs-grant")
    key, secret = api_key_create(account=account, name="docs")
    return account, secret


def stock_path(directory: Path) -> str:
    """A bin directory with links to the stock tools and curl, and nothing else."""
    directory.mkdir()
    for tool in (*STOCK_TOOLS, "curl"):
        found = shutil.which(tool)
        assert found, f"{tool} is not installed here"
        (directory / tool).symlink_to(found)
    return str(directory)


def test_the_quick_start_runs_on_a_stock_shell_as_written(live_asgi: LiveServer, funded_key, tmp_path):
    if not shutil.which("curl"):  # the one tool the page asks for (.ci/install-system-packages has it)
        if services_required():
            pytest.fail("RIVYA_TEST_REQUIRE_SERVICES=1 but curl is not installed", pytrace=False)
        pytest.skip("needs curl")
    account, secret = funded_key
    page = httpx.get(f"{live_asgi.url}/docs/quickstart", timeout=10).text
    assert "uuidgen" not in page
    assert "| jq" not in page.replace("with <code>jq</code> installed, <code>| jq", "")
    shell = [b for b in code_blocks(page) if not b.startswith(("import ", "from ")) and "example.com" not in b]
    assert len(shell) == 8, shell  # key, models, upload, submit, wait, download (2 lines), chat stream, credits
    work = tmp_path / "work"
    work.mkdir()
    Image.new("RGB", (64, 48), "teal").save(work / "sketch.png")
    script = "\n".join(shell).replace('export RIVYA_API_KEY="rvya_sk_…"', f'export RIVYA_API_KEY="{secret}"')
    script = f'set -u\n{script}\necho\necho "TASK=$TASK"\n'
    bin_dir = stock_path(tmp_path / "bin")
    result = subprocess.run(
        [str(Path(bin_dir) / "sh"), "-c", script],
        cwd=work,
        env={"PATH": bin_dir, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "not found" not in result.stderr, result.stderr
    task = re.search(r"^TASK=(task_\w+)$", result.stdout, re.M)
    assert task, result.stdout
    assert re.search(rf'"id": *"{task.group(1)}", *"object": *"generation"[^\n]*"status": *"succeeded"', result.stdout)
    with Image.open(work / "result.png") as image:
        assert image.format == "PNG"
    # Exactly one task, charged once, for all of it (the Idempotency-Key line really sent a key).
    assert wallet_entries(account=account, type="settle").filter(reference=task.group(1)).count() == 1
    assert "StreamingHttpResponse must consume" not in live_asgi.logs()


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_opens_with_what_it_is_two_commands_and_a_ten_line_quick_start():
    text = README.read_text()
    assert len(text) < 10_000, "the README is a front page; operations, benchmarks and tests live in docs/"
    intro, rest = text.split("\n## ", 1)
    assert "Django apps" in intro and "public API" in intro  # noqa: PT018
    commands = rest.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in commands] == [["make", "run"], ["make", "test"]]
    makefile = (README.parent / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile  # noqa: PT018
    block = text.split("<!-- readme-quickstart -->", 1)[1].split("<!-- /readme-quickstart -->", 1)[0]
    assert len(block.strip().splitlines()) <= 10
    # Every file the README links to exists, and the moved sections are where it says.
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (README.parent / target).exists(), target
    docs = README.parent / "docs"
    assert "<!-- bench-table -->" in (docs / "benchmarks.md").read_text()
    assert "## Production stack" in (docs / "operations.md").read_text()
    assert "## Fault and soak tests" in (docs / "testing.md").read_text()
    assert "test-artifacts/screenshots/" in (docs / "testing.md").read_text()


def test_the_readme_quick_start_runs_on_a_stock_shell_as_written(live_asgi: LiveServer, funded_key, tmp_path):
    """The README's block, pasted into sh in a checkout where ``make run`` wrote var/demo_api_key."""
    if not shutil.which("curl"):
        if services_required():
            pytest.fail("RIVYA_TEST_REQUIRE_SERVICES=1 but curl is not installed", pytrace=False)
        pytest.skip("needs curl")
    account, secret = funded_key
    text = README.read_text()
    block = text.split("<!-- readme-quickstart -->", 1)[1].split("<!-- /readme-quickstart -->", 1)[0]
    script = block.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "http://127.0.0.1:8000/api/v1" in script  # where make run serves
    script = script.replace("http://127.0.0.1:8000", live_asgi.url)
    work = tmp_path / "checkout"
    (work / "var").mkdir(parents=True)
    (work / "var" / "demo_api_key").write_text(f"{secret}\n")
    bin_dir = stock_path(tmp_path / "bin")
    result = subprocess.run(
        [str(Path(bin_dir) / "sh"), "-c", f'set -eu\n{script}\necho\necho "TASK=$TASK"\n'],
        cwd=work,
        env={"PATH": bin_dir, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    task = re.search(r"^TASK=(task_\w+)$", result.stdout, re.M)
    assert task, result.stdout
    assert re.search(rf'"id": *"{task.group(1)}", *"object": *"generation"[^\n]*"status": *"succeeded"', result.stdout)
    assert '"object": "list"' in result.stdout or '"object":"list"' in result.stdout  # the models
    assert wallet_entries(account=account, type="settle").filter(reference=task.group(1)).count() == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_the_python_receiver_on_the_webhooks_page_verifies_a_real_delivery(live_asgi: LiveServer, funded_key, tmp_path):
    _, secret = funded_key
    page = httpx.get(f"{live_asgi.url}/docs/webhooks", timeout=10).text
    receiver_code = next(b for b in code_blocks(page) if "class Receiver(BaseHTTPRequestHandler)" in b)
    assert "pip install standardwebhooks" in page
    (tmp_path / "receiver.py").write_text(receiver_code)
    port = free_port()
    api = live_asgi.api(secret)
    created = api.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/", "event_types": ["*"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    env = {**os.environ, "RIVYA_WEBHOOK_SECRET": endpoint["secret"], "PORT": str(port)}
    receiver = subprocess.Popen(
        [sys.executable, "receiver.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        # A forged delivery is refused.
        forged = httpx.post(
            f"http://127.0.0.1:{port}/",
            content=b'{"type": "generation.succeeded"}',
            headers={"webhook-id": "evt_x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
        )
        assert forged.status_code == 400
        sent = api.post(f"/api/v1/webhooks/{endpoint['id']}/test")
        assert sent.status_code == 202, sent.text
        event_id = sent.json()["id"]
        delivered = wait_for_delivery(api, event_id)
        assert (delivered["state"], delivered["attempts"][0]["status_code"]) == ("succeeded", 204)
    finally:
        receiver.terminate()
        out, err = receiver.communicate(timeout=10)
        api.delete(f"/api/v1/webhooks/{endpoint['id']}")
    assert out.splitlines() == [f"verified webhook.test {event_id}"], err


def wait_for_delivery(api: httpx.Client, event_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = api.get(f"/api/v1/webhook-events/{event_id}").json()["deliveries"][0]
        if delivery["state"] != "pending":
            return delivery
        time.sleep(0.2)
    raise AssertionError(f"{event_id} was not delivered within {timeout}s")
