"""Fixtures for anything that stores files: a private storage folder per test, and helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _private_media_root(settings: Any, tmp_path: Path) -> Path:
    """Every test stores file bytes under its own temporary folder, never in var/media."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


@pytest.fixture
def media_root(_private_media_root: Path) -> Path:
    """The folder the default storage writes to in this test."""
    return _private_media_root


def stored_files(root: Path) -> list[Path]:
    """Every file under the storage folder."""
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []
