"""Build the sdist and the wheel once per test run, from a copy of the sources (the checkout stays clean)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rivya_core", "rivya_api", "rivya_billing", "rivya_webhooks")
PROJECT_FILES = ("pyproject.toml", "README.md", "CHANGELOG.md", "MANIFEST.in")


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    seconds: float


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build`` (sdist, then the wheel from the sdist), without isolation: nothing is downloaded."""
    source = tmp_path_factory.mktemp("source")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in PROJECT_FILES:
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [sdist] = dist.glob("*.tar.gz")
    [wheel] = dist.glob("*.whl")
    return Built(sdist=sdist, wheel=wheel, seconds=time.monotonic() - started)
