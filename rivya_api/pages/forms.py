"""Forms of the settings pages and Studio. They validate input; the services do the work."""

from __future__ import annotations

from datetime import timedelta

from django import forms

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
