"""Forms of the settings pages and Studio. They validate input; the services do the work."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms

from rivya_api.catalog.selectors import catalog_models
from rivya_api.common import hostile
from rivya_api.common.errors import ApiError
from rivya_api.keys.scopes import SCOPES
from rivya_api.keys.services import NAME_MAX_LENGTH, ROLL_GRACE_CHOICES, CreditLimit

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


LIMIT_WINDOW_CHOICES = [("total", "in total"), ("day", "per day (UTC)"), ("month", "per month (UTC)")]


class CreditLimitFields(forms.Form):
    credit_limit = forms.IntegerField(
        required=False,
        min_value=0,
        label="Credit limit",
        help_text="The most credits the key may reserve; empty: no limit beyond the wallet.",
    )
    credit_limit_window = forms.ChoiceField(
        choices=LIMIT_WINDOW_CHOICES, initial="total", required=False, label="Window"
    )

    def credit_limit_value(self) -> CreditLimit | None:
        credits = self.cleaned_data.get("credit_limit")
        if credits is None:
            return None
        return CreditLimit(credits=credits, window=self.cleaned_data.get("credit_limit_window") or "total")


class APIKeyCreateForm(CreditLimitFields):
    name = forms.CharField(
        max_length=NAME_MAX_LENGTH,
        required=True,
        help_text="A name that tells you where the key is used, e.g. “production server”.",
    )
    expires_in_days = forms.ChoiceField(choices=KEY_EXPIRY_CHOICES, required=False, label="Expires")
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do; none checked: everything but managing keys (keys:read, keys:write).",
    )
    models = forms.MultipleChoiceField(
        choices=[],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The models the key may use; none checked: every model.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["models"].choices = [(model.id, model.id) for model in catalog_models()]

    field_order = ["name", "expires_in_days", "scopes", "models", "credit_limit", "credit_limit_window"]

    def expires_in(self) -> timedelta | None:
        days = self.cleaned_data.get("expires_in_days")
        return timedelta(days=int(days)) if days else None


class APIKeyLimitForm(CreditLimitFields):
    """Set, change or (empty) remove a key's credit limit on its page."""


class APIKeyRollForm(forms.Form):
    grace = forms.ChoiceField(
        choices=[(value, ROLL_GRACE_LABELS[value]) for value in ROLL_GRACE_CHOICES],
        widget=forms.RadioSelect,
        initial="24h",
        label="How long the old key keeps working",
    )

    def grace_period(self) -> timedelta:
        return ROLL_GRACE_CHOICES[self.cleaned_data["grace"]]


# Studio draws a field for each input parameter of these JSON Schema types; the others (arrays,
# objects, unions) go in the advanced JSON box.
_FIELD_TYPES = ("string", "integer", "number", "boolean")


def _schema_field(name: str, schema: dict[str, Any]) -> forms.Field | None:
    """A form field for one input parameter, from its JSON Schema; None if Studio has no field for it.

    Every field is optional: left empty, the parameter is left out and the model's default
    applies (shown as the placeholder). The model's schema still validates what is sent.
    """
    kind = schema.get("type")
    if kind not in _FIELD_TYPES:
        return None
    label = name.replace("_", " ").capitalize()
    help_text = schema.get("description", "")
    default = schema.get("default")
    attrs: dict[str, Any] = {"data-param": name}
    if default is not None:
        attrs["placeholder"] = str(default).lower() if isinstance(default, bool) else str(default)
    if "enum" in schema:
        choices = [("", f"Default ({default})" if default is not None else "Default")]
        choices += [(str(value), str(value)) for value in schema["enum"]]
        return forms.ChoiceField(
            label=label, choices=choices, required=False, help_text=help_text, widget=forms.Select(attrs=attrs)
        )
    if kind == "boolean":
        shown = f" ({str(default).lower()})" if default is not None else ""
        choices = [("", f"Default{shown}"), ("true", "true"), ("false", "false")]
        return forms.ChoiceField(
            label=label, choices=choices, required=False, help_text=help_text, widget=forms.Select(attrs=attrs)
        )
    if kind in ("integer", "number"):
        for bound in ("minimum", "maximum"):
            if bound in schema:
                attrs[bound[:3]] = schema[bound]
        attrs["step"] = schema.get("multipleOf", 1 if kind == "integer" else "any")
        field_class = forms.IntegerField if kind == "integer" else forms.FloatField
        return field_class(label=label, required=False, help_text=help_text, widget=forms.NumberInput(attrs=attrs))
    if "x-rivya-file" in schema:
        attrs["placeholder"] = "file_…"
        help_text = (help_text + " The id of a file you uploaded (POST /api/v1/files).").strip()
    if "maxLength" in schema:
        attrs["maxlength"] = schema["maxLength"]
    return forms.CharField(
        label=label, required=False, strip=True, help_text=help_text, widget=forms.TextInput(attrs=attrs)
    )


def _field_name(model_id: str, name: str) -> str:
    return f"{model_id}.{name}"


class StudioGenerationForm(forms.Form):
    """A Studio submission: a model, a prompt, the model's other parameters as fields drawn from its
    JSON Schema, and an advanced JSON box for anything else (the fields win where both set a name)."""

    model = forms.ChoiceField(label="Model")
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=4000)
    parameters = forms.CharField(
        label="Advanced: more parameters as JSON",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text='Optional, e.g. {"seed": 7}, for parameters without a field above. The model reference lists them.',
    )

    def __init__(self, *args: Any, models: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m.id, f"{m.id} ({m.kind})") for m in models]
        # Per model, its parameter fields (named "<model>.<parameter>"); the prompt has its own field.
        self.model_fields: dict[str, list[str]] = {}
        self.choice_values: dict[str, dict[str, Any]] = {}
        for model in models:
            names = []
            for name, schema in (model.parameters.get("properties") or {}).items():
                field = _schema_field(name, schema) if name != "prompt" else None
                if field is None:
                    continue
                field.widget.attrs["id"] = f"id_{model.id}-{name}"
                self.fields[_field_name(model.id, name)] = field
                if schema.get("type") == "boolean":
                    self.choice_values[_field_name(model.id, name)] = {"true": True, "false": False}
                elif "enum" in schema:
                    self.choice_values[_field_name(model.id, name)] = {str(v): v for v in schema["enum"]}
                names.append(name)
            self.model_fields[model.id] = names

    def parameter_groups(self) -> list[tuple[str, list[Any]]]:
        """``(model id, [bound fields])`` for each model with parameter fields, for the template."""
        return [
            (model_id, [self[_field_name(model_id, name)] for name in names])
            for model_id, names in self.model_fields.items()
            if names
        ]

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

    def field_for_param(self, param: str) -> str | None:
        """The form field an error about ``param`` (``input.width``) belongs to, for the chosen model."""
        model_id = self.cleaned_data.get("model") or ""
        name = param.removeprefix("input.").split(".", 1)[0].split("[", 1)[0]
        if param in ("input.prompt", "model"):
            return param.removeprefix("input.")
        if name in self.model_fields.get(model_id, []):
            return _field_name(model_id, name)
        return "parameters" if param.startswith("input") else None

    def generation_input(self) -> dict[str, Any]:
        """The model's input: the advanced JSON, then the filled-in fields, then the prompt."""
        values = dict(self.cleaned_data["parameters"])
        model_id = self.cleaned_data["model"]
        for name in self.model_fields.get(model_id, []):
            field_name = _field_name(model_id, name)
            value = self.cleaned_data.get(field_name)
            if value is None or value == "":
                continue
            # A choice is sent as the schema's own value (true/false for a boolean, 7 for an enum of numbers).
            values[name] = self.choice_values.get(field_name, {}).get(value, value)
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
