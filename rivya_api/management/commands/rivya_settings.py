"""``manage.py rivya_settings [--write FILE]``: every setting of every Rivya app, with its default.

Read from the apps' settings objects (``rivya_api.conf``, ``rivya_billing.conf``,
``rivya_webhooks.conf``): the keys and defaults are the objects' own, and each key's
meaning is the comment written above it in that module, so the table cannot drift
from the code. Prints a Markdown reference; ``--write FILE`` replaces the part of FILE
between ``<!-- rivya-settings -->`` and ``<!-- /rivya-settings -->`` with it
(docs/integration.md; a test fails when the committed copy is stale).
"""

from __future__ import annotations

import inspect
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rivya_api import conf as api_conf
from rivya_billing import conf as billing_conf
from rivya_webhooks import conf as webhooks_conf

PIPE = "\\|"  # a literal | inside a Markdown table cell
START, END = "<!-- rivya-settings -->", "<!-- /rivya-settings -->"
NAMESPACES = [(api_conf, "api_settings"), (billing_conf, "billing_settings"), (webhooks_conf, "webhooks_settings")]


def key_comments(module: Any) -> dict[str, str]:
    """Each DEFAULTS key's comment: the ``#`` lines above it, shared by the keys that follow them."""
    lines = inspect.getsource(module).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("DEFAULTS"))
    comments: dict[str, str] = {}
    pending: list[str] = []
    current = ""
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if line.startswith("}"):
            break
        if stripped.startswith("# ---"):
            pending, current = [], ""
        elif stripped.startswith("#"):
            pending.append(stripped.lstrip("# "))
        elif not stripped:
            pending, current = [], ""
        elif match := re.match(r'\s{4}"([A-Z0-9_]+)":', line):
            if pending:
                current, pending = " ".join(pending), []
            comments[match.group(1)] = current
    return comments


def default_text(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"timedelta(seconds={int(value.total_seconds())})"
    return repr(value)


def reference() -> str:
    """The Markdown reference of every setting (namespaces in dependency order)."""
    out = [
        "### `RIVYA_ACCOUNT_MODEL`",
        "",
        "Top-level setting, read by every app (`rivya_core.conf.account_model_label()`). Default: "
        "`AUTH_USER_MODEL`. The `app_label.Model` every account foreign key points at; set it before the "
        "first `migrate`.",
    ]
    for module, name in NAMESPACES:
        settings_object = getattr(module, name)
        comments = key_comments(module)
        out += ["", f"### `{settings_object.namespace}` (`{module.__name__}.{name}`)", ""]
        out += ["| key | default | meaning |", "| --- | --- | --- |"]
        for key, value in settings_object.defaults.items():
            marks = " (dotted path)" if key in settings_object.import_strings else ""
            meaning = (comments.get(key) or "").replace("|", PIPE)
            default = default_text(value).replace("|", PIPE)
            out.append(f"| `{key}`{marks} | `{default}` | {meaning} |")
    return "\n".join(out) + "\n"


class Command(BaseCommand):
    help = "Print every Rivya setting with its default (Markdown), or write it into a file between markers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--write", metavar="FILE", help=f"Replace the text between {START} and {END} in FILE.")

    def handle(self, *args: Any, **options: Any) -> None:
        text = reference()
        if not options["write"]:
            self.stdout.write(text, ending="")
            return
        path = Path(options["write"])
        document = path.read_text()
        if START not in document or END not in document:
            raise CommandError(f"{path} has no {START} … {END} block.")
        head, rest = document.split(START, 1)
        _, tail = rest.split(END, 1)
        path.write_text(f"{head}{START}\n{text}{END}{tail}")
