"""Django admin of rivya_billing: wallets with grant/adjust (a reason is required), a read-only ledger.

Staff change credits only through ``credits_grant`` and ``credits_adjust``, so
every change is a ledger entry whose description is the reason and whose actor
is the staff user. Entries and holds are read-only: the ledger is append-only
and holds are resolved by the work they belong to. Each wallet's page shows its
reconciliation status (``wallet_reconcile``: the ledger replayed against the
stored totals); the changelist action checks several at once.

Each credits form carries a reference generated when it is shown, which is the
ledger operation's idempotency key: submitting the same form twice (a double
click, a resent POST) changes the wallet once.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from rivya_billing.exceptions import RivyaError
from rivya_billing.models import Hold, LedgerEntry, Wallet
from rivya_billing.selectors import wallet_reconcile
from rivya_billing.services import credits_adjust, credits_grant

ADMIN_REFERENCE_PREFIX = "admin:"


class CreditsForm(forms.Form):
    """Grant (adds) or adjust (adds or removes) credits, with the reason the ledger records."""

    action = forms.ChoiceField(
        choices=[("grant", "Grant credits (adds)"), ("adjust", "Adjust the balance (adds or removes)")],
        widget=forms.RadioSelect,
        initial="grant",
    )
    amount = forms.IntegerField(help_text="Whole credits. For an adjustment, negative removes.")
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Written to the ledger.",
        error_messages={"required": "A reason is required."},
    )
    reference = forms.CharField(widget=forms.HiddenInput)

    def clean_reason(self) -> str:
        reason = (self.cleaned_data.get("reason") or "").strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        amount, action = data.get("amount"), data.get("action")
        if amount is not None and action == "grant" and amount <= 0:
            self.add_error("amount", "A grant adds credits: give a positive amount (or adjust to remove).")
        if amount == 0:
            self.add_error("amount", "The amount cannot be zero.")
        return data


class NewWalletCreditsForm(CreditsForm):
    account = forms.IntegerField(label="Account id", help_text="Primary key of the account to credit.")


def _apply(form: CreditsForm, *, account: Any, request: HttpRequest) -> LedgerEntry:
    data = form.cleaned_data
    reference = ADMIN_REFERENCE_PREFIX + data["reference"]
    actor = f"staff:{request.user.pk}"
    if data["action"] == "grant":
        return credits_grant(
            account=account, amount=data["amount"], reference=reference, actor=actor, description=data["reason"]
        )
    return credits_adjust(
        account=account, amount=data["amount"], reference=reference, reason=data["reason"], actor=actor
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = [
        "sequence",
        "created_at",
        "type",
        "amount",
        "balance_after",
        "held_after",
        "reference",
        "actor",
        "description",
    ]
    readonly_fields = fields
    ordering = ["-sequence"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "ledger (newest first; all entries are in Ledger entries)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[LedgerEntry]:
        # The newest 50 only: a wallet can have millions of entries.
        queryset = super().get_queryset(request)
        newest = list(queryset.order_by("-sequence").values_list("pk", flat=True)[:50])
        return queryset.filter(pk__in=newest)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _account_search_fields() -> list[str]:
    account_model = Wallet._meta.get_field("account").related_model
    names = {field.name for field in account_model._meta.get_fields()}
    fields = []
    username_field = getattr(account_model, "USERNAME_FIELD", None)
    if username_field:
        fields.append(f"account__{username_field}")
    for candidate in ("name", "email", "slug"):
        if candidate in names and f"account__{candidate}" not in fields:
            fields.append(f"account__{candidate}")
    if "owner" in names:
        fields.append(f"account__owner__{get_user_model().USERNAME_FIELD}")
    return fields


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["__str__", "balance", "held", "available_display", "last_sequence", "updated_at"]
    list_select_related = ["account"]
    ordering = ["-updated_at", "-pk"]
    readonly_fields = [
        "account",
        "balance",
        "held",
        "available_display",
        "last_sequence",
        "created_at",
        "updated_at",
        "reconciliation",
        "credits_link",
    ]
    fields = readonly_fields
    inlines = [LedgerEntryInline]
    actions = ["check_ledgers"]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # The account model is the host's; search what it has, and a hold's work reference (a task id).
        return ["=holds__reference", *_account_search_fields()]

    @admin.display(description="available")
    def available_display(self, obj: Wallet) -> int:
        return obj.available

    @admin.display(description="reconciliation")
    def reconciliation(self, obj: Wallet) -> str:
        check = wallet_reconcile(wallet_id=obj.pk)
        if check.ok:
            return format_html("✔ consistent: {} entries replay to the stored balance and held", check.entries)
        items = format_html_join("", "<li>{}</li>", ((problem,) for problem in check.problems))
        return format_html(
            '<strong style="color:#b42318">✘ {} problem(s)</strong><ul>{}</ul>', len(check.problems), items
        )

    @admin.display(description="credits")
    def credits_link(self, obj: Wallet) -> str:
        url = reverse("admin:rivya_billing_wallet_credits", args=[obj.pk])
        return format_html('<a class="button" href="{}">Grant or adjust credits…</a>', url)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The wallet's fields change only through the credits form (a ledger entry).
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        custom = [
            path(
                "<int:wallet_id>/credits/",
                self.admin_site.admin_view(self.credits_view),
                name="rivya_billing_wallet_credits",
            ),
        ]
        return custom + super().get_urls()

    def _credits_allowed(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rivya_billing.change_wallet") or request.user.has_perm("rivya_billing.add_wallet")

    def credits_view(self, request: HttpRequest, wallet_id: int) -> HttpResponse:
        if not self._credits_allowed(request):
            raise PermissionDenied
        wallet = get_object_or_404(Wallet.objects.select_related("account"), pk=wallet_id)
        form = CreditsForm(request.POST or None, initial={"reference": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            if self._post_credits(request, form, account=wallet.account):
                return HttpResponseRedirect(reverse("admin:rivya_billing_wallet_change", args=[wallet.pk]))
        return self._credits_page(request, form, wallet=wallet, title=f"Credits of {wallet.account}")

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """A wallet is created by its first grant: the add page is the credits form with an account."""
        if not self._credits_allowed(request):
            raise PermissionDenied
        form = NewWalletCreditsForm(request.POST or None, initial={"reference": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            account_model = Wallet._meta.get_field("account").related_model
            account = account_model._default_manager.filter(pk=form.cleaned_data["account"]).first()
            if account is None:
                form.add_error("account", "No such account.")
            elif self._post_credits(request, form, account=account):
                wallet = Wallet.objects.get(account=account)
                return HttpResponseRedirect(reverse("admin:rivya_billing_wallet_change", args=[wallet.pk]))
        return self._credits_page(request, form, wallet=None, title="Grant credits to an account")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._credits_allowed(request)

    def _post_credits(self, request: HttpRequest, form: CreditsForm, *, account: Any) -> bool:
        try:
            entry = _apply(form, account=account, request=request)
        except RivyaError as exc:
            form.add_error("amount" if getattr(exc, "param", None) in ("amount", None) else None, str(exc))
            return False
        change = entry.balance_delta
        self.message_user(
            request,
            f"{entry.type} {change:+d} credits for {account} (ledger entry {entry.public_id}); "
            f"balance {entry.balance_after}.",
            messages.SUCCESS,
        )
        return True

    def _credits_page(
        self, request: HttpRequest, form: CreditsForm, *, wallet: Wallet | None, title: str
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "wallet": wallet,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/rivya_billing/wallet/credits.html", context)

    @admin.action(description="Check the ledger of the selected wallets (reconciliation)")
    def check_ledgers(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> None:
        for wallet in queryset:
            check = wallet_reconcile(wallet_id=wallet.pk)
            if check.ok:
                self.message_user(request, f"{wallet}: consistent ({check.entries} entries).", messages.SUCCESS)
            else:
                self.message_user(request, f"{wallet}: {'; '.join(check.problems[:5])}", messages.ERROR)


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
    list_select_related = ["wallet__account"]
    search_fields = ["=public_id", "=reference", "=hold__reference", "=hold__public_id"]
    ordering = ["-created_at", "-pk"]
    show_full_result_count = False


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
    list_select_related = ["wallet__account"]
    search_fields = ["=public_id", "=reference"]
    ordering = ["-created_at", "-pk"]
    show_full_result_count = False
