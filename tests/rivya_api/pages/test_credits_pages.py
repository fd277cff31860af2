"""The credits page: wallet totals, spend per day and kind, the ledger linked to its work, CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_api.generations import services
from rivya_api.pages.charts import nice_ceiling
from rivya_api.pages.ledger import daily_spend
from rivya_billing.services import credits_adjust, credits_grant, credits_refund
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]

PAGE = "/settings/credits"


def run(account, model_id: str, django_capture_on_commit_callbacks, **input):
    with django_capture_on_commit_callbacks(execute=False):
        task = services.generation_create(account=account, model_id=model_id, input={"prompt": "x", **input})
        return services.generation_run(task_pk=task.pk)


@pytest.fixture
def history(member, django_capture_on_commit_callbacks):
    """A grant, an image (4), an audio (3) and a video (6) that succeeded, and one that failed (released)."""
    credits_grant(account=member.account, amount=100, reference="welcome", description="Welcome credits")
    tasks = {
        kind: run(member.account, f"test-{kind}", django_capture_on_commit_callbacks)
        for kind in ("image", "audio", "video")
    }
    tasks["failed"] = run(member.account, "test-failing", django_capture_on_commit_callbacks)
    return tasks


def test_wallet_totals_and_ledger_linked_to_tasks(member, history):
    html = member.client.get(PAGE).content.decode()
    assert 'data-wallet="balance">87<' in html
    assert 'data-wallet="held">0<' in html
    assert 'data-wallet="available">87<' in html
    for task in history.values():
        assert f'href="/settings/generations/{task.public_id}"' in html
    assert "Welcome credits" in html
    # A settle row says what it took and links to the generation it paid for.
    image = history["image"]
    rows = re.findall(r"<tr data-entry-id=.*?</tr>", html, re.S)
    settle = next(row for row in rows if ">settle<" in row and image.public_id in row)
    assert "-4" in settle
    assert "image" in settle


def test_spend_per_day_by_kind_counts_charges_less_refunds(member, history):
    days, series = daily_spend(account=member.account)
    assert len(days) == 30
    assert days[-1] == timezone.now().date()
    today = {s.kind: s.values[-1] for s in series}
    assert today == {"image": 4, "video": 6, "audio": 3, "chat": 0}  # the failed task was released, not spent
    credits_refund(account=member.account, reference="goodwill", charge_reference=history["video"].public_id, amount=2)
    _, series = daily_spend(account=member.account)
    assert {s.kind: s.values[-1] for s in series}["video"] == 4
    # Tomorrow the window still has today's spend, one slot to the left.
    _, later = daily_spend(account=member.account, now=timezone.now() + timedelta(days=1))
    assert {s.kind: s.values[-2] for s in later}["image"] == 4
    assert {s.kind: s.values[-1] for s in later}["image"] == 0


def test_chart_is_inline_svg_with_a_bar_per_kind_and_a_table(member, history):
    html = member.client.get(PAGE).content.decode()
    svg = html.split('<figure class="card">', 1)[1].split("<svg", 1)[1].split("</svg>", 1)[0]  # the chart, not a swatch
    day = timezone.now().date().isoformat()
    kinds = set(re.findall(rf'data-kind="(\w+)" data-day="{day}"', svg))
    assert kinds == {"image", "audio", "video"}
    assert f"<title>{day} · image: 4 credits</title>" in svg
    table = html.split('<table class="usage">')[1].split("</table>")[0]
    assert f'<th scope="row">{day}</th>' in table
    assert "<script" not in html.split('id="usage"')[1].split("</section>")[0]  # no JavaScript needed


def test_nice_axis():
    assert nice_ceiling(0) == (4, 1)
    assert nice_ceiling(7) == (8, 2)
    assert nice_ceiling(37) == (40, 10)
    assert nice_ceiling(999) == (1000, 200)


def test_ledger_filters_and_pages(member, history):
    only_grants = member.client.get(PAGE, {"type": "grant"}).content.decode()
    assert only_grants.count("<tr data-entry-id=") == 1
    by_task = member.client.get(PAGE, {"reference": history["audio"].public_id}).content.decode()
    assert by_task.count("<tr data-entry-id=") == 2  # its reserve and its settle
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert member.client.get(PAGE, {"since": tomorrow}).content.decode().count("<tr data-entry-id=") == 0
    for index in range(30):
        credits_adjust(account=member.account, amount=1, reference=f"adj-{index}", reason="test")
    first = member.client.get(PAGE).content.decode()
    assert first.count("<tr data-entry-id=") == 25
    assert "Page 1 of 2" in first
    assert 'href="?page=2"' in first
    filtered = member.client.get(PAGE, {"type": "adjust"}).content.decode()
    assert 'href="?type=adjust&amp;page=2"' in filtered


def test_csv_export_has_every_matching_entry_with_its_work(member, history):
    response = member.client.get(f"{PAGE}/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1 + 3 * 2 + 2  # grant; reserve+settle ×3; reserve+release
    settle = next(row for row in rows if row["type"] == "settle" and row["work"] == history["video"].public_id)
    assert (settle["kind"], settle["balance_change"], settle["amount"]) == ("video", "-6", "6")
    assert int(rows[0]["balance_after"]) == 87  # newest first
    filtered = member.client.get(f"{PAGE}/export.csv", {"type": "release"})
    lines = b"".join(filtered.streaming_content).decode().strip().splitlines()
    assert len(lines) == 2
    assert history["failed"].public_id in lines[1]


def test_another_accounts_ledger_is_not_reachable(member, stranger, history):
    credits_grant(account=stranger.account, amount=7, reference="theirs")
    html = stranger.client.get(PAGE).content.decode()
    assert 'data-wallet="balance">7<' in html
    assert html.count("<tr data-entry-id=") == 1
    for task in history.values():
        assert task.public_id not in html
    assert (
        stranger.client.get(PAGE, {"reference": history["image"].public_id})
        .content.decode()
        .count("<tr data-entry-id=")
        == 0
    )
    exported = b"".join(stranger.client.get(f"{PAGE}/export.csv").streaming_content).decode()
    assert len(exported.strip().splitlines()) == 2
    _, series = daily_spend(account=stranger.account)
    assert sum(sum(s.values) for s in series) == 0


def test_wallet_summary_is_the_accounts_own(member, stranger, history):
    response = member.client.get(f"{PAGE}/wallet")
    assert response.json() == {"balance": 87, "held": 0, "available": 87}
    assert response["Cache-Control"] == "no-store"
    assert stranger.client.get(f"{PAGE}/wallet").json() == {"balance": 0, "held": 0, "available": 0}


def test_csv_never_shows_primary_keys_of_actors(member, stranger):
    credits_grant(account=member.account, amount=5, reference="by-staff", actor=f"user:{stranger.user.pk}")
    rows = list(
        csv.DictReader(io.StringIO(b"".join(member.client.get(f"{PAGE}/export.csv").streaming_content).decode()))
    )
    assert [row["actor"] for row in rows] == ["user"]


def test_the_low_balance_alert_is_set_seen_and_turned_off_on_the_credits_page(member, stranger):
    from rivya_billing.models import LowBalanceNotice
    from rivya_billing.selectors import wallet_get

    credits_grant(account=member.account, amount=100, reference="welcome")
    page = member.client.get(PAGE).content.decode()
    assert "Low-balance alert" in page
    assert 'data-alert="triggered"' not in page

    response = member.client.post("/settings/credits/alerts", {"low_balance_threshold": "150"})
    assert response.status_code == 302
    assert wallet_get(account=member.account).low_balance_threshold == 150
    page = member.client.get(PAGE).content.decode()
    assert 'data-alert="triggered"' in page  # 100 < 150: crossed at once
    assert 'value="150"' in page
    assert LowBalanceNotice.objects.filter(wallet__account=member.account).count() == 1
    assert wallet_get(account=stranger.account).low_balance_threshold is None

    bad = member.client.post("/settings/credits/alerts", {"low_balance_threshold": "0"})
    assert bad.status_code == 400
    assert "greater than or equal to 1" in bad.content.decode()
    assert wallet_get(account=member.account).low_balance_threshold == 150

    assert member.client.post("/settings/credits/alerts", {"low_balance_threshold": ""}).status_code == 302
    assert wallet_get(account=member.account).low_balance_threshold is None


def test_the_credits_page_lists_expiring_grants_soonest_first(member, stranger):
    from rivya_billing.services import credits_expire_grants, credits_reserve

    assert "Expiring credits" not in member.client.get(PAGE).content.decode()
    now = timezone.now()
    credits_grant(account=member.account, amount=100, reference="plain")
    credits_grant(account=member.account, amount=30, reference="late", expires_at=now + timedelta(days=30))
    credits_grant(account=member.account, amount=20, reference="soon", expires_at=now + timedelta(days=2))
    page = member.client.get(PAGE).content.decode()
    assert "Expiring credits" in page
    rows = re.findall(r'<td class="num">(\d+)</td><td><time datetime="([^"]+)"', page)
    assert [int(c) for c, _ in rows] == [20, 30]
    assert "data-due" not in page
    # A grant past its expiry whose rest is held by running work stays listed, marked due.
    past = now - timedelta(days=3)
    credits_grant(account=member.account, amount=10, reference="old", expires_at=past + timedelta(days=1), now=past)
    credits_reserve(account=member.account, amount=4, reference="task_1")
    assert credits_expire_grants() == 6
    page = member.client.get(PAGE).content.decode()
    rows = re.findall(r'<td class="num">(\d+)</td><td><time datetime="([^"]+)"', page)
    assert [int(c) for c, _ in rows] == [4, 20, 30]
    assert page.count("data-due") == 1
    assert "Expiring credits" not in stranger.client.get(PAGE).content.decode()
