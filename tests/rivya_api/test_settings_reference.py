"""docs/integration.md lists every setting of every app with its default, generated from the settings objects."""

from __future__ import annotations

import io
from pathlib import Path

from django.core.management import call_command

from rivya_api.conf import api_settings
from rivya_api.management.commands.rivya_settings import END, START, key_comments, reference
from rivya_billing.conf import billing_settings
from rivya_webhooks.conf import webhooks_settings

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integration.md"


def test_the_committed_reference_is_current():
    committed = GUIDE.read_text().split(START, 1)[1].split(END, 1)[0]
    assert committed.strip() == reference().strip(), (
        "docs/integration.md is stale: run `python manage.py rivya_settings --write docs/integration.md`"
    )


def test_every_key_of_every_namespace_has_its_default_and_a_meaning():
    text = reference()
    for settings_object in (api_settings, billing_settings, webhooks_settings):
        assert f"`{settings_object.namespace}`" in text
        for key in settings_object.defaults:
            assert f"| `{key}`" in text, key
    import rivya_api.conf
    import rivya_billing.conf
    import rivya_webhooks.conf

    for module, settings_object in (
        (rivya_api.conf, api_settings),
        (rivya_billing.conf, billing_settings),
        (rivya_webhooks.conf, webhooks_settings),
    ):
        comments = key_comments(module)
        undocumented = [key for key in settings_object.defaults if not comments.get(key)]
        assert not undocumented, f"write a comment above these keys in {module.__name__}: {undocumented}"


def test_the_command_prints_it_and_writes_it(tmp_path):
    out = io.StringIO()
    call_command("rivya_settings", stdout=out)
    assert out.getvalue() == reference()
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    call_command("rivya_settings", "--write", str(page))
    assert page.read_text() == f"intro\n{START}\n{reference()}{END}\noutro\n"
