"""Fill a folder with the wheels a host needs to install the built rivya-api wheel offline.

``make test`` runs it before the tests (``var/wheelhouse``, again only when
``requirements.txt`` or ``pyproject.toml`` change), so the host-from-wheel tier
installs with ``pip --no-index`` and downloads nothing while tests run. The set is
the apps' runtime dependencies, the ``channels`` extra and the host's own server
(uvicorn, WhiteNoise), each at the version ``requirements.txt`` pins. pip takes
wheels it has already downloaded from its cache.

    python tests/packaging/wheelhouse.py var/wheelhouse
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST_EXTRAS = ("channels",)
HOST_OWN = ["uvicorn", "whitenoise"]


def host_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *(req for extra in HOST_EXTRAS for req in extras[extra]), *HOST_OWN]


def main(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(host_requirements()) + "\n")
        requirements.flush()
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
             "--dest", str(target), "--constraint", str(ROOT / "requirements.txt"), "--requirement", requirements.name],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
