"""The size limits of the library code (STYLE.md 28, issue 24): no module over 500 lines, no function over 60.

Walks the four library packages (``rivya_api``, ``rivya_billing``, ``rivya_webhooks``,
``rivya_core``), migrations excluded: they are generated, and their size follows the schema.
A module's size is its number of lines. A function's size (methods, nested and async
functions included) runs from its ``def`` line to its last line, docstring and comments
included; decorators are not counted, so a view whose OpenAPI documentation is long is
judged by its code. The test lists every offender at once, so one run shows all that is
left to split.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rivya_api", "rivya_billing", "rivya_webhooks", "rivya_core")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def library_modules(root: Path) -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" not in path.relative_to(root).parts:
                yield path


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function with its qualified name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def oversized(root: Path) -> list[str]:
    """One line per module over ``MAX_MODULE_LINES`` and per function over ``MAX_FUNCTION_LINES``, largest first."""
    modules: list[tuple[int, str, int, str]] = []
    functions: list[tuple[int, str, int, str]] = []
    for path in library_modules(root):
        name = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            modules.append((lines, name, 0, f"module {name}: {lines} lines (limit {MAX_MODULE_LINES})"))
        for qualname, node in _functions(ast.parse(text, filename=name)):
            size = node.end_lineno - node.lineno + 1  # from the def line: decorators not counted
            if size > MAX_FUNCTION_LINES:
                message = f"function {name}:{node.lineno} {qualname}: {size} lines (limit {MAX_FUNCTION_LINES})"
                functions.append((size, name, node.lineno, message))
    return [item[3] for item in sorted(modules, key=_largest_first) + sorted(functions, key=_largest_first)]


def _largest_first(item: tuple[int, str, int, str]) -> tuple[int, str, int]:
    size, name, lineno, _ = item
    return -size, name, lineno


def test_library_code_is_within_the_size_limits():
    offenders = oversized(ROOT)
    if offenders:
        pytest.fail(
            f"{len(offenders)} piece(s) of library code over the size limits (STYLE.md 28; decorators not "
            "counted): split them by concern, not by line count.\n  " + "\n  ".join(offenders),
            pytrace=False,
        )


def _function(header: str, length: int, indent: str = "") -> str:
    """Source of a function ``length`` lines long from its def line."""
    return f"{indent}{header}\n" + f"{indent}    x = 1\n" * (length - 1)


def test_the_check_finds_long_modules_and_functions_and_skips_migrations(tmp_path: Path):
    """The check itself: it reports what is over the limits, and only that."""
    (tmp_path / "rivya_api" / "migrations").mkdir(parents=True)
    (tmp_path / "rivya_core").mkdir()
    (tmp_path / "rivya_api" / "long.py").write_text("\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "rivya_api" / "short.py").write_text("\n" * MAX_MODULE_LINES)
    (tmp_path / "rivya_api" / "migrations" / "0001_initial.py").write_text(_function("def huge():", 600))
    (tmp_path / "rivya_core" / "code.py").write_text(
        # At the limit from its def line (3); its two decorators do not count.
        "@decorator\n@decorator\n"
        + _function("def at_limit():", MAX_FUNCTION_LINES)
        + "class Thing:\n"  # line 63
        + _function("async def over(self):", MAX_FUNCTION_LINES + 1, indent="    ")
        + "def outer():\n"  # line 125
        + _function("def inner():", MAX_FUNCTION_LINES + 1, indent="    ")
    )

    assert oversized(tmp_path) == [
        "module rivya_api/long.py: 501 lines (limit 500)",
        "function rivya_core/code.py:125 outer: 62 lines (limit 60)",
        "function rivya_core/code.py:64 Thing.over: 61 lines (limit 60)",
        "function rivya_core/code.py:126 outer.inner: 61 lines (limit 60)",
    ]
