"""The built distribution: metadata that twine accepts, one version, and every file the apps need.

The wheel must carry every migration, template, static file and management command
of the apps (a host that installs it has nothing else), and nothing of the reference
project or the tests. The extras must match what the code imports only when an
optional part is used.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser

import pytest

from rivya_core import __version__
from tests.packaging.conftest import PACKAGES, ROOT

pytestmark = pytest.mark.slow

# Import name -> distribution, for every third-party package the apps import. A new import
# needs a row here and a place in pyproject.toml: the base dependencies or an extra.
DISTRIBUTION_OF = {
    "django": "django", "asgiref": "django", "rest_framework": "djangorestframework",
    "drf_spectacular": "drf-spectacular", "drf_spectacular_sidecar": "drf-spectacular-sidecar",
    "celery": "celery", "kombu": "celery", "standardwebhooks": "standardwebhooks", "cryptography": "cryptography",
    "jsonschema": "jsonschema", "httpx": "httpx", "httpcore": "httpx", "h11": "httpx", "PIL": "pillow", "av": "av",
    "channels": "channels", "prometheus_client": "prometheus-client", "redis": "redis",
    "csp": "django-csp", "billiard": "billiard", "psycopg": "psycopg", "psycopg_pool": "psycopg",
}  # fmt: skip
# Modules that only an optional part loads (a host names them in its settings or asgi.py), so they
# may import that extra's packages at module level.
OPTIONAL_MODULES = {"rivya_api/pages/routing.py", "rivya_api/pages/consumers.py", "rivya_api/pages/layers.py"}


def source_files(pattern: str) -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).glob(pattern)
        if path.is_file() and "__pycache__" not in path.parts
    }


def wheel_names(built) -> set[str]:
    return set(zipfile.ZipFile(built.wheel).namelist())


def metadata(built) -> Parser:
    with zipfile.ZipFile(built.wheel) as wheel:
        [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(wheel.read(name).decode())


def test_twine_accepts_both(built):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.sdist), str(built.wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_wheel_holds_every_migration_template_static_file_and_command(built):
    names = wheel_names(built)
    kinds = {
        "migrations": source_files("**/migrations/*.py"),
        "templates": source_files("**/templates/**/*"),
        "static files": source_files("**/static/**/*"),
        "management commands": source_files("**/management/commands/*.py") - source_files("**/__init__.py"),
        "modules": source_files("**/*.py"),
    }
    for kind, files in kinds.items():
        assert files, kind
        missing = sorted(files - names)
        assert not missing, f"{kind} missing from the wheel: {missing}"
    print({kind: len(files) for kind, files in kinds.items()}, f"built in {built.seconds:.1f} s")  # noqa: T201
    assert {name.split("/")[0] for name in names} == {*PACKAGES, f"rivya_api-{__version__}.dist-info"}
    with tarfile.open(built.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert kinds["templates"] | kinds["static files"] | kinds["migrations"] <= in_sdist
    assert "CHANGELOG.md" in in_sdist


def test_one_version(built):
    assert metadata(built)["Version"] == __version__
    assert built.wheel.name == f"rivya_api-{__version__}-py3-none-any.whl"
    import rivya_api

    assert rivya_api.__version__ == __version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(__version__)}\b", changelog, re.M), "CHANGELOG.md has no entry for it"


def _imports() -> list[tuple[str, str, bool]]:
    """(module path, imported top-level name, imported at module level) for every third-party import."""
    found = []
    for path in sorted(source_files("**/*.py")):
        tree = ast.parse((ROOT / path).read_text())
        found += [(path, name, True) for name in _names(tree.body, lazy=False)]
        found += [(path, name, False) for name in _names(tree.body, lazy=True)]
    return [(p, n, top) for p, n, top in found if n not in sys.stdlib_module_names and not n.startswith("rivya_")]


def _names(body: list[ast.stmt], *, lazy: bool) -> list[str]:
    """Imports at module level (lazy=False) or inside functions and ``try: … except ImportError`` (lazy=True)."""
    names: list[str] = []
    for node in body:
        if isinstance(node, ast.Import) and not lazy:
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not lazy and not node.level and node.module != "__future__":
            names.append(node.module.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or _guards_import(node):
            nested = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
            if lazy:
                names += [_top(n) for n in nested if _top(n)]
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            names += _names([n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)], lazy=lazy)
    return names


def _guards_import(node: ast.stmt) -> bool:
    return isinstance(node, ast.Try) and any(
        isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
    )


def _top(node: ast.Import | ast.ImportFrom) -> str | None:
    if isinstance(node, ast.ImportFrom):
        return None if node.level or node.module == "__future__" else node.module.split(".")[0]
    return node.names[0].name.split(".")[0]


def test_extras_match_what_the_code_imports_lazily(built):
    requires = metadata(built).get_all("Requires-Dist")
    base, extras = set(), {}
    for requirement in requires:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()
        extra = re.search(r"""extra\s*==\s*["']([^"']+)""", requirement)
        if extra:
            extras.setdefault(extra.group(1), set()).add(name)
        else:
            base.add(name)
    optional = {dist for names in extras.values() for dist in names}
    imported_lazily = set()
    for path, name, module_level in _imports():
        assert name in DISTRIBUTION_OF, f"{path} imports {name}: add it to the dependencies and DISTRIBUTION_OF"
        dist = DISTRIBUTION_OF[name]
        assert dist in base | optional, f"{path} imports {name} ({dist}), which no requirement or extra installs"
        if dist not in base:
            assert not module_level or path in OPTIONAL_MODULES, f"{path} imports optional {name} at module level"
            imported_lazily.add(dist)
    for extra, names in extras.items():
        if extra in ("all", "postgres"):  # postgres: Django's postgresql backend imports psycopg
            continue
        assert names & imported_lazily, f"the {extra!r} extra installs {names}, which the code never imports"
    assert extras["all"] >= {"rivya-api"}
