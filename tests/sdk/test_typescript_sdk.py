"""The TypeScript SDK's own suite, run from pytest so that ``make test`` and CI include it.

``scripts/sdk-test.sh --check`` installs the pinned npm tools, fails when the committed
generated types (``sdk/typescript/src/generated/openapi.ts``) differ from what this server's
OpenAPI document generates, type-checks, builds, checks the bundle budget and runs vitest
against real servers it starts from this checkout (temporary SQLite database, so it needs
neither PostgreSQL nor Redis). Marked ``node``: skipped without Node.js 20+, a failure in CI.
Regenerate the types after an API change with ``make sdk`` (or ``scripts/sdk-test.sh``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "sdk-test.sh"


@pytest.mark.node
@pytest.mark.slow
# Its own budget: two builds (ESM and CommonJS), the packed tarball installed into a scratch
# project, and vitest against a real server; a loaded 2-CPU machine takes minutes.
@pytest.mark.timeout(900)
def test_typescript_sdk_suite_passes() -> None:
    # Plain output: the summary is read below, and CI=true makes vitest colour it.
    env = {**os.environ, "RIVYA_PYTHON": sys.executable, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    result = subprocess.run(
        [str(SCRIPT), "--check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(
            f"scripts/sdk-test.sh --check failed (exit {result.returncode}); the end of its output:\n"
            + "\n".join(output.splitlines()[-120:]),
            pytrace=False,
        )
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    summary = re.search(r"^\s*Tests\s+(\d+ passed.*)$", output, re.MULTILINE)
    assert summary, f"no vitest summary in the output:\n{output[-3000:]}"
    # Tests skipped for an endpoint this server does not have yet: say which, every run.
    skipped = re.findall(r"^\s*↓ (.+)$", output, re.MULTILINE)
    if skipped:
        warnings.warn(f"TypeScript SDK: {summary.group(1)}; skipped: " + "; ".join(skipped), UserWarning, stacklevel=1)
