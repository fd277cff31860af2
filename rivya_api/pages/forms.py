"""Forms of the settings pages and Studio. They validate input; the services do the work."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms

from rivya_api.common import hostile
from rivya_api.common.errors import ApiError
from rivya_api.keys.services import NAME_MAX_LENGTH, ROLL_GRACE_CHOICES

KEY_EXPIRY_CHOICES = [
    ("", "Never"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In 1 year"),
]

ROLL_GRACE_LABELS = {
    "now": "Expire the old key now",
    "1h": "1 hour",
    "24h": "24 hours",
    "7d": "7 days",
}


class APIKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX_LENGTH,
        required=True,
        help_text="A name that tells you where the key is used, e.g. “production server”.",
    )
    expires_in_days = forms.ChoiceField(choices=KEY_EXPIRY_CHOICES, required=False, label="Expires")

    def expires_in(self) -> timedelta | None:
        days = self.cleaned_data.get("expires_in_days")
        return timedelta(days=int(days)) if days else None


class APIKeyRollForm(forms.Form):
    grace = forms.ChoiceField(
        choices=[(value, ROLL_GRACE_LABELS[value]) for value in ROLL_GRACE_CHOICES],
        widget=forms.RadioSelect,
        initial="24h",
        label="How long the old key keeps working",
    )

    def grace_period(self) -> timedelta:
        return ROLL_GRACE_CHOICES[self.cleaned_data["grace"]]


class StudioGenerationForm(forms.Form):
    """A Studio submission: a model, a prompt and, for the other parameters, a JSON object."""

    model = forms.ChoiceField(label="Model")
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=4000)
    parameters = forms.CharField(
        label="Other parameters (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text='Optional, e.g. {"width": 512, "height": 512, "seed": 7}. The model reference lists them.',
    )

    def __init__(self, *args: Any, models: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m.id, f"{m.id} ({m.kind})") for m in models]

    def clean_parameters(self) -> dict[str, Any]:
        raw = (self.cleaned_data.get("parameters") or "").strip()
        if not raw:
            return {}
        try:
            # The gate's rules (depth, NUL, surrogates, number range): this field is JSON inside a form.
            value = hostile.json_loads(raw, param="parameters")
        except ApiError as exc:
            raise forms.ValidationError(str(exc.detail)) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"seed": 7}.')
        return value

    def generation_input(self) -> dict[str, Any]:
        values = dict(self.cleaned_data["parameters"])
        if self.cleaned_data.get("prompt"):
            values["prompt"] = self.cleaned_data["prompt"]
        return values


class WebhookEndpointForm(forms.Form):
    """An endpoint's URL, description and the event types it receives (``*``: every type)."""

    url = forms.URLField(label="Endpoint URL", max_length=2048, assume_scheme="https")
    description = forms.CharField(required=False, max_length=500)
    event_types = forms.MultipleChoiceField(
        label="Events to send", widget=forms.CheckboxSelectMultiple, error_messages={"required": "Choose at least one."}
    )

    def __init__(self, *args: Any, event_types: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event_types"].choices = [("*", "All events, including types added later"), *event_types]
