"""The one-way dependency rule (DESIGN.md, "Layout"), as `make test` checks it with import-linter.

`make test` runs `lint-imports` on the checkout. These tests run the same contract on a
copy of the packages, to show that it passes as they are and fails when a forbidden import
(webhooks -> billing, billing -> rivya_api, an app -> config) is added anywhere, migrations included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "rivya_api", "rivya_billing", "rivya_webhooks", "rivya_core")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.html", "*.css", "*.js"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}  # import-linter wraps its report to the terminal's width
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_packages_keep_the_contract(copy):
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("rivya_webhooks/models.py", "rivya_billing.conf"),
        ("rivya_webhooks/migrations/0001_endpoints_events_deliveries.py", "rivya_billing.conf"),
        ("rivya_billing/services/ledger.py", "rivya_api.conf"),
        ("rivya_core/ids.py", "rivya_billing.models"),
        ("rivya_api/accounts.py", "config.settings"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(copy, module, forbidden):
    with (copy / module).open("a") as source:
        source.write(f"\n\ndef _late():\n    import {forbidden}  # noqa\n")
    result = lint(copy)
    assert result.returncode == 1, result.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {forbidden}" in " ".join(result.stdout.split()), result.stdout
