"""Django admin of the credit ledger.

Staff see every wallet with a reconciliation status, grant and adjust credits
(actions that require a reason, written to the ledger entry; a grant may expire), set a wallet's
low-balance threshold (through ``credits_alert_set``), and browse entries, holds,
expiring grants and low-balance notices read-only. Nothing here writes a wallet, hold or entry
directly: every change goes through ``rivya_billing.services``, so the admin
keeps the same invariants, idempotency and audit trail as the API.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from rivya_billing import services
from rivya_billing.exceptions import BillingError
from rivya_billing.models import CreditGrant, Hold, HoldState, LedgerEntry, LowBalanceNotice, SpendLimit, Wallet
from rivya_billing.selectors import wallet_reconcile


def admin_actor(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


class LedgerActionForm(forms.Form):
    """Amount and reason of a grant or adjustment; ``reference`` makes a double submit harmless."""

    amount = forms.IntegerField(help_text="Whole credits.")
    reason = forms.CharField(max_length=500, help_text="Required; written to the ledger entry.")
    reference = forms.CharField(widget=forms.HiddenInput, max_length=200)
    expires_at = forms.DateTimeField(
        required=False,
        help_text="Optional (UTC, e.g. 2026-12-31 23:59): what is left of the grant then leaves the wallet; "
        "spending draws the soonest-expiring grant first. Empty: never expires.",
    )

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        if kind == "grant":
            self.fields["amount"].min_value = 1
            self.fields["amount"].validators.append(_positive)
        else:
            del self.fields["expires_at"]
            self.fields["amount"].help_text = "Whole credits: positive adds, negative removes."

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The amount cannot be zero.")
        return amount

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


def _positive(value: int) -> None:
    if value < 1:
        raise forms.ValidationError("A grant must be at least 1 credit.")


class WalletAddForm(forms.ModelForm):
    """Open a wallet with a first grant (wallets exist only through the ledger)."""

    amount = forms.IntegerField(min_value=1, help_text="Credits of the opening grant.")
    reason = forms.CharField(max_length=500, help_text="Required; written to the ledger entry.")

    class Meta:
        model = Wallet
        fields = ["account"]


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["__str__", "balance", "held", "available_credits", "last_sequence", "reconciliation", "updated_at"]
    list_select_related = ["account"]
    readonly_fields = [
        "account",
        "balance",
        "held",
        "available_credits",
        "last_sequence",
        "created_at",
        "updated_at",
        "low_balance_armed",
        "reconciliation_report",
        "recent_entries",
    ]
    raw_id_fields = ["account"]
    actions = ["grant_credits", "adjust_credits"]
    ordering = ["-updated_at"]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # The account model is the host's; search whichever of these it has.
        account_fields = {f.name for f in Wallet._meta.get_field("account").related_model._meta.get_fields()}
        return [f"account__{name}" for name in ("username", "email", "name") if name in account_fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Wallet]:
        # The list's reconciliation column: totals of each wallet's entries and pending holds,
        # one aggregate per wallet on this page (the change page replays the full ledger).
        entries = LedgerEntry.objects.filter(wallet=OuterRef("pk")).order_by().values("wallet")
        pending = Hold.objects.filter(wallet=OuterRef("pk"), state=HoldState.PENDING).order_by().values("wallet")

        def total(queryset: QuerySet, expression: Any) -> Coalesce:
            subquery = Subquery(queryset.annotate(total=expression).values("total"), output_field=IntegerField())
            return Coalesce(subquery, Value(0))

        return (
            super()
            .get_queryset(request)
            .annotate(
                entries_balance=total(entries, Sum("balance_delta")),
                entries_held=total(entries, Sum("held_delta")),
                entries_count=total(entries, Count("pk")),
                pending_held=total(pending, Sum("amount")),
            )
        )

    def get_fields(self, request: HttpRequest, obj: Wallet | None = None) -> list[str]:
        if obj is None:
            return ["account", "amount", "reason"]
        return [*self.readonly_fields[:-2], "low_balance_threshold", *self.readonly_fields[-2:]]

    def get_readonly_fields(self, request: HttpRequest, obj: Wallet | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Wallet | None = None, **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = WalletAddForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request: HttpRequest, obj: Wallet, form: forms.ModelForm, change: bool) -> None:
        if change:
            # Balances change only through the ledger; the one editable field, the low-balance
            # threshold, through its service (which arms it and judges it under the wallet's lock).
            if "low_balance_threshold" in form.changed_data:
                services.credits_alert_set(
                    account=obj.account, low_balance_threshold=form.cleaned_data["low_balance_threshold"]
                )
            return
        entry = services.credits_grant(
            account=form.cleaned_data["account"],
            amount=form.cleaned_data["amount"],
            reference=f"admin:grant:{uuid.uuid4().hex}",
            actor=admin_actor(request),
            description=form.cleaned_data["reason"],
        )
        wallet = Wallet.objects.get(pk=entry.wallet_id)
        obj.pk, obj.balance, obj.held, obj.last_sequence = wallet.pk, wallet.balance, wallet.held, wallet.last_sequence
        obj._state.adding = False

    def has_delete_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False

    @admin.display(description="available")
    def available_credits(self, wallet: Wallet) -> int:
        return wallet.available

    @admin.display(description="reconciliation")
    def reconciliation(self, wallet: Wallet) -> str:
        consistent = (
            wallet.balance == wallet.entries_balance
            and wallet.held == wallet.entries_held == wallet.pending_held
            and wallet.last_sequence == wallet.entries_count
        )
        if consistent:
            return format_html('<span style="color:#2e7d32">{}</span>', "consistent")
        return format_html('<strong style="color:#c62828">{}</strong>', "DRIFT: open the wallet for details")

    @admin.display(description="reconciliation (full replay)")
    def reconciliation_report(self, wallet: Wallet) -> str:
        check = wallet_reconcile(wallet_id=wallet.pk)
        if check.ok:
            return format_html(
                "Consistent: {} entries replay to balance {} and held {}.", check.entries, wallet.balance, wallet.held
            )
        return format_html(
            '<strong style="color:#c62828">Drift</strong><ul>{}</ul>',
            format_html_join("", "<li>{}</li>", ((problem,) for problem in check.problems)),
        )

    @admin.display(description="recent entries")
    def recent_entries(self, wallet: Wallet) -> str:
        entries = LedgerEntry.objects.filter(wallet=wallet).order_by("-sequence")[:20]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    e.sequence,
                    e.created_at.isoformat(timespec="seconds"),
                    e.type,
                    e.amount,
                    e.balance_after,
                    e.held_after,
                    e.reference,
                )
                for e in entries
            ),
        )
        link = reverse("admin:rivya_billing_ledgerentry_changelist") + f"?wallet__id__exact={wallet.pk}"
        return format_html(
            "<table><tr><th>#</th><th>at</th><th>type</th><th>amount</th><th>balance</th><th>held</th>"
            '<th>reference</th></tr>{}</table><p><a href="{}">All entries of this wallet</a></p>',
            rows,
            link,
        )

    # -- actions -----------------------------------------------------------------------------

    @admin.action(description="Grant credits to the selected wallets", permissions=["change"])
    def grant_credits(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> HttpResponse | None:
        return self._ledger_action(request, queryset, kind="grant")

    @admin.action(description="Adjust the balance of the selected wallets", permissions=["change"])
    def adjust_credits(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> HttpResponse | None:
        return self._ledger_action(request, queryset, kind="adjust")

    def _ledger_action(self, request: HttpRequest, queryset: QuerySet[Wallet], *, kind: str) -> HttpResponse | None:
        if "apply" in request.POST:
            form = LedgerActionForm(request.POST, kind=kind)
            if form.is_valid():
                self._apply(request, queryset, kind=kind, **form.cleaned_data)
                return None  # back to the change list, with the messages
        else:
            form = LedgerActionForm(initial={"reference": f"admin:{kind}:{uuid.uuid4().hex}"}, kind=kind)
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant credits" if kind == "grant" else "Adjust balances",
            "kind": kind,
            "form": form,
            "wallets": queryset.select_related("account"),
            "action": f"{kind}_credits",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "rivya_billing/admin/ledger_action.html", context)

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Wallet],
        *,
        kind: str,
        amount: int,
        reason: str,
        reference: str,
        expires_at: Any = None,
    ) -> None:
        done = 0
        for wallet in queryset.select_related("account"):
            try:
                if kind == "grant":
                    services.credits_grant(
                        account=wallet.account,
                        amount=amount,
                        reference=f"{reference}:{wallet.pk}",
                        actor=admin_actor(request),
                        description=reason,
                        expires_at=expires_at,
                    )
                else:
                    services.credits_adjust(
                        account=wallet.account,
                        amount=amount,
                        reference=f"{reference}:{wallet.pk}",
                        reason=reason,
                        actor=admin_actor(request),
                    )
                done += 1
            except BillingError as error:
                self.message_user(request, f"{wallet}: {error}", messages.ERROR)
        if done:
            verb = "Granted" if kind == "grant" else "Adjusted by"
            self.message_user(request, f"{verb} {amount} credits: {done} wallet(s).", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is written by services only; the admin shows it."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "wallet",
        "sequence",
        "type",
        "amount",
        "balance_after",
        "held_after",
        "reference",
        "actor",
        "created_at",
    ]
    list_filter = ["type"]
    search_fields = ["public_id", "reference", "actor", "description"]
    list_select_related = ["wallet__account"]
    ordering = ["-created_at", "-pk"]


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdmin):
    """Expiring grants: what is left of each, spent and expired (``GRANT_EXPIRY_NOTE``)."""

    list_display = ["reference", "wallet", "amount", "remaining", "drawn", "expired", "expires_at", "created_at"]
    search_fields = ["reference"]
    list_select_related = ["wallet__account"]
    ordering = ["expires_at", "pk"]


@admin.register(LowBalanceNotice)
class LowBalanceNoticeAdmin(ReadOnlyAdmin):
    """Each crossing of a wallet's low-balance threshold, and when its credits.low event was published."""

    list_display = ["__str__", "wallet", "available", "threshold", "sequence", "created_at", "published_at"]
    list_select_related = ["wallet__account"]
    ordering = ["-pk"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "wallet",
        "reference",
        "amount",
        "state",
        "captured",
        "refunded",
        "lease_expires_at",
        "created_at",
    ]
    list_filter = ["state"]
    search_fields = ["public_id", "reference"]
    list_select_related = ["wallet__account"]
    ordering = ["-created_at", "-pk"]


@admin.register(SpendLimit)
class SpendLimitAdmin(ReadOnlyAdmin):
    """Spend limits (an API key's credit limit points at one); set through the owner (the key), shown here."""

    list_display = ["public_id", "owner_ref", "credits", "window", "used", "window_start", "updated_at"]
    list_filter = ["window"]
    search_fields = ["public_id", "owner_ref"]
    ordering = ["-updated_at", "-pk"]
