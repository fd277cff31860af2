"""Django admin for API keys: list, create (secret shown once), roll and revoke.

Every write goes through the services, so the admin leaves the same audit
trail as any other caller. The secret appears once, in the admin message of
the response that created it. That response is rendered directly instead of
redirecting, so the message is consumed while rendering and never written to
the message cookie or the session. Afterwards the admin shows the key only as
``prefix…last4``; the hash is never shown.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from rivya_api.catalog.selectors import catalog_models
from rivya_api.keys.exceptions import APIKeyError
from rivya_api.keys.models import APIKey, APIKeyEvent
from rivya_api.keys.scopes import DEFAULT_SCOPES, SCOPES
from rivya_api.keys.selectors import api_key_credit_limits, api_key_predecessors_working
from rivya_api.keys.services import ROLL_GRACE_CHOICES, CreditLimit, api_key_create, api_key_revoke, api_key_roll

SOURCE = "admin"


def client_ip(request: HttpRequest) -> str | None:
    """The peer address. Behind a proxy, set it from the proxy's header in middleware, not here."""
    return request.META.get("REMOTE_ADDR") or None


# What "Roll" does when nobody picks a grace period: the settings page's default too
# (rivya_api.pages.forms.APIKeyRollForm), long enough to deploy the new secret.
DEFAULT_ROLL_GRACE = "24h"


class APIKeyActionForm(ActionForm):
    grace = forms.ChoiceField(
        label="When rolling, the old key keeps working for",
        required=False,
        initial=DEFAULT_ROLL_GRACE,
        choices=[
            ("24h", "24 hours"),
            ("1h", "1 hour"),
            ("7d", "7 days"),
            ("now", "no time: it stops now"),
        ],
    )


class APIKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES],
        initial=list(DEFAULT_SCOPES),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do (none checked: every scope but keys:*). keys:read/keys:write let it "
        "list and create other keys of the account.",
    )
    models = forms.CharField(required=False, help_text="Comma-separated model ids the key may use; empty: every model.")
    credit_limit = forms.IntegerField(
        required=False, min_value=0, help_text="The most credits the key may reserve per window; empty: no limit."
    )
    credit_limit_window = forms.ChoiceField(
        choices=[("total", "in total"), ("day", "per day (UTC)"), ("month", "per month (UTC)")],
        initial="total",
        required=False,
    )

    class Meta:
        model = APIKey
        fields = ["account", "name", "expires_at"]

    EXTRA_FIELDS = ["scopes", "models", "credit_limit", "credit_limit_window"]

    def clean_models(self) -> list[str] | None:
        models = [m.strip() for m in (self.cleaned_data.get("models") or "").split(",") if m.strip()]
        known = {model.id for model in catalog_models()}
        unknown = [m for m in models if m not in known]
        if unknown:
            raise forms.ValidationError(f"Unknown model {unknown[0]!r}; known: {', '.join(sorted(known))}.")
        return models or None

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, label in APIKey.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> QuerySet[APIKey]:
        now = timezone.now()
        not_expired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if self.value() == APIKey.Status.ACTIVE:
            return queryset.filter(not_expired, revoked_at__isnull=True, replaced_by__isnull=True)
        if self.value() == APIKey.Status.ROLLING:
            return queryset.filter(not_expired, revoked_at__isnull=True, replaced_by__isnull=False)
        if self.value() == APIKey.Status.EXPIRED:
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == APIKey.Status.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class APIKeyEventInline(admin.TabularInline):
    model = APIKeyEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "action", "actor", "source", "ip", "details"]
    readonly_fields = fields
    ordering = ["-created_at", "-pk"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _short_time(value: Any, empty: str = "-") -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else empty


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "account", "created", "last_used", "expires", "status_display"]
    list_filter = [StatusFilter]
    list_select_related = ["account"]
    search_fields = ["public_id", "name", "prefix"]
    ordering = ["-created_at", "-pk"]
    raw_id_fields = ["account"]
    actions = ["roll_keys", "revoke_keys", "revoke_keys_and_predecessors"]
    action_form = APIKeyActionForm
    inlines = [APIKeyEventInline]

    class Media:
        css = {"all": ["rivya_api/admin.css"]}  # the list fits its column (browser-tested)

    # The view page: everything but the hash, all read-only.
    fields = [
        "public_id",
        "key",
        "name",
        "account",
        "status_display",
        "created_at",
        "created_by",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "replaced_by",
        "scopes",
        "models_display",
        "credit_limit_display",
    ]
    readonly_fields = fields

    @admin.display(description="models")
    def models_display(self, obj: APIKey) -> str:
        return "every model" if obj.allowed_models is None else ", ".join(obj.allowed_models) or "none"

    @admin.display(description="credit limit")
    def credit_limit_display(self, obj: APIKey) -> str:
        limit = api_key_credit_limits([obj]).get(obj.spend_limit_id) if obj.spend_limit_id else None
        if limit is None:
            return "none"
        per = {"total": "in total", "day": "per day (UTC)", "month": "per month (UTC)"}[limit["window"]]
        resets = f"; resets {limit['resets_at']:%Y-%m-%d %H:%M} UTC" if limit["resets_at"] else ""
        return f"{limit['used']} of {limit['credits']} credits used {per}{resets}"

    @admin.display(description="key")
    def key(self, obj: APIKey) -> str:
        return obj.masked

    # Dates as 2026-12-06 16:57 (UTC, the pages' format): short, and they wrap between day and time.
    @admin.display(description="created at", ordering="created_at")
    def created(self, obj: APIKey) -> str:
        return _short_time(obj.created_at)

    @admin.display(description="last used at", ordering="last_used_at")
    def last_used(self, obj: APIKey) -> str:
        return _short_time(obj.last_used_at, empty="never")

    @admin.display(description="expires at", ordering="expires_at")
    def expires(self, obj: APIKey) -> str:
        return _short_time(obj.expires_at, empty="never")

    @admin.display(description="status")
    def status_display(self, obj: APIKey) -> str:
        return obj.status

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = APIKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*APIKeyAddForm.Meta.fields, *APIKeyAddForm.EXTRA_FIELDS] if obj is None else list(self.fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else list(self.readonly_fields)

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return [] if obj is None else list(self.inlines)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keys change only through roll and revoke (actions on the list), so a
        # key's own page is read-only; the list still allows the actions.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the audit trail keeps every key

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        limit = data.get("credit_limit")
        key, secret = api_key_create(
            account=data["account"],
            name=data.get("name") or "",
            expires_at=data.get("expires_at"),
            created_by=request.user,
            ip=client_ip(request),
            source=SOURCE,
            scopes=data.get("scopes") or None,  # none checked: the default scopes
            models=data.get("models"),
            credit_limit=None
            if limit is None
            else CreditLimit(credits=limit, window=data.get("credit_limit_window") or "total"),
        )
        for field in APIKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False
        obj._new_secret = secret  # type: ignore[attr-defined]  # for response_add only; never saved

    def response_add(self, request: HttpRequest, obj: APIKey, post_url_continue: Any = None) -> Any:
        return self._secret_once(request, [(obj, obj._new_secret)], title="API key created")  # type: ignore[attr-defined]

    def _secret_once(self, request: HttpRequest, issued: list[tuple[APIKey, str]], title: str) -> TemplateResponse:
        for key, secret in issued:
            messages.success(
                request,
                format_html(
                    "New secret for {} ({}): <code>{}</code> — copy it now, it will not be shown again.",
                    key.name or key.public_id,
                    key.public_id,
                    secret,
                ),
            )
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "issued": [key for key, _ in issued],
        }
        response = TemplateResponse(request, "admin/rivya_api/apikey/secret_once.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Roll selected keys (issue replacements)", permissions=["change"])
    def roll_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> Any:
        grace = ROLL_GRACE_CHOICES.get(request.POST.get("grace") or DEFAULT_ROLL_GRACE)
        if grace is None:
            self.message_user(request, "Choose how long the old keys keep working, then roll.", messages.ERROR)
            return None
        issued = []
        for key in queryset:
            try:
                issued.append(
                    api_key_roll(api_key=key, grace=grace, actor=request.user, ip=client_ip(request), source=SOURCE)
                )
            except APIKeyError as exc:
                self.message_user(request, f"{key.public_id}: {exc}", messages.ERROR)
        if not issued:
            return None
        return self._secret_once(request, issued, title="API keys rolled")

    @admin.action(description="Revoke selected keys now", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        self._revoke(request, queryset, predecessors=False)

    @admin.action(
        description="Revoke selected keys now, with the keys they replaced that still work", permissions=["change"]
    )
    def revoke_keys_and_predecessors(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        self._revoke(request, queryset, predecessors=True)

    def _revoke(self, request: HttpRequest, queryset: QuerySet[APIKey], *, predecessors: bool) -> None:
        revoked: set[str] = set()
        for key in queryset:
            older = api_key_predecessors_working(api_key=key) if predecessors else []
            if key.revoked_at is None or older:
                revoked |= {k.public_id for k in older} | ({key.public_id} if key.revoked_at is None else set())
                api_key_revoke(
                    api_key=key,
                    actor=request.user,
                    ip=client_ip(request),
                    source=SOURCE,
                    predecessors=predecessors,
                )
        self.message_user(request, f"Revoked {len(revoked)} key(s).", messages.SUCCESS)
        left = {k.public_id for key in queryset for k in api_key_predecessors_working(api_key=key)}
        if left:
            self.message_user(
                request,
                f"Still working in their grace period, as keys the selected ones replaced: {', '.join(sorted(left))}.",
                messages.WARNING,
            )


@admin.register(APIKeyEvent)
class APIKeyEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "action", "api_key", "account", "actor", "source", "ip"]
    list_filter = ["action", "source"]
    list_select_related = ["api_key", "account", "actor"]
    search_fields = ["api_key__public_id", "ip"]
    ordering = ["-created_at", "-pk"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
