"""Forms of the operators' console: command inputs, the job page and the account page."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django import forms

from accounts.models import Account
from core import input as client_input
from core.errors import ValidationFailed
from jobs import rules, services
from jobs.execution.actions.registry import task_kind_names
from jobs.models import Job, Schedule
from jobs.states import MUTABLE_FIELDS

RESOLUTION_CODES = [
    ("ignored", "ignored: nothing to do"),
    ("fixed", "fixed: repaired elsewhere"),
    ("cancelled", "cancelled: no longer wanted"),
    ("duplicate", "duplicate: another job did it"),
]


class RetryForm(forms.Form):
    note = forms.CharField(
        required=False, max_length=2000, widget=forms.TextInput(attrs={"size": 50})
    )


class TriggerForm(forms.Form):
    force = forms.BooleanField(
        required=False,
        help_text="Run even while another job of the same account and action is running.",
    )
    note = forms.CharField(
        required=False, max_length=2000, widget=forms.TextInput(attrs={"size": 50})
    )


class ResolveForm(forms.Form):
    code = forms.ChoiceField(choices=RESOLUTION_CODES, initial="ignored")
    note = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 50}),
        help_text="Required: say why, for whoever reads the audit log next.",
    )


class CancelForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"size": 50}),
        help_text="Why: it becomes the note of the job's resolution. The worker stops the run "
        "at its next ownership check, or at the latest at its timeout.",
    )


class DeleteForm(forms.Form):
    """Deleting takes no input; the confirmation is the input."""


COMMAND_FORMS: dict[str, type[forms.Form]] = {
    "retry": RetryForm,
    "trigger": TriggerForm,
    "resolve": ResolveForm,
    "cancel": CancelForm,
    "delete": DeleteForm,
}


class PrettyJSONField(forms.JSONField):
    """A JSON editor that shows the value indented, in a monospace box. What is typed is
    parsed by the input boundary's rules (core.input.loads: depth, NUL characters, lone
    surrogates, lengths), as the API's bodies are; the error names the path (`$.a.b`)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget", forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "json-editor"})
        )
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            converted = client_input.loads(value, "$")
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message, code="invalid") from None
        return forms.fields.JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        try:
            return client_input.loads(data)
        except (ValueError, ValidationFailed):
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


class JobChangeForm(forms.ModelForm):
    """Only the mutable fields are form fields; the services decide what a change means."""

    payload = PrettyJSONField(required=False)
    labels = PrettyJSONField(required=False, help_text='String values: {"team": "mail"}.')

    class Meta:
        model = Job
        fields = list(MUTABLE_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "run_at" in self.fields:
            # Compare with the stored value, not a hidden copy (run_at's default is callable).
            self.fields["run_at"].show_hidden_initial = False
        # The widget shows whole seconds: compare against that, or every save moves run_at.
        if self.initial.get("run_at"):
            self.initial["run_at"] = self.initial["run_at"].replace(microsecond=0)

    def clean_run_at(self) -> datetime | None:
        run_at = self.cleaned_data.get("run_at")
        if run_at is not None:
            problem = client_input.utc_problem(run_at)
            if problem:
                raise forms.ValidationError(f"This date-time {problem}")
            run_at = run_at.astimezone(UTC)
        return run_at

    def clean_payload(self) -> Any:
        return self.cleaned_data["payload"] or {}

    def clean_labels(self) -> Any:
        return self.cleaned_data["labels"] or {}


class AccountForm(forms.ModelForm):
    """The IMAP password is write-only: never rendered, only replaced when a new one is typed."""

    imap_password = forms.CharField(
        label="IMAP password",
        required=False,
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown. Leave empty to keep the current one.",
    )
    imap_folders_text = forms.CharField(
        label="IMAP folders",
        required=False,
        help_text="Comma-separated; empty means INBOX.",
    )

    class Meta:
        model = Account
        fields = ["name", "email", "imap_host", "imap_port", "imap_security", "imap_username"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["imap_folders_text"].initial = ", ".join(self.instance.imap_folders or [])

    def full_clean(self) -> None:
        super().full_clean()
        # A message that quotes a bad value ("Select a valid choice. x is not one of ...")
        # never quotes the password typed in the same form.
        password = self.data.get(self.add_prefix("imap_password")) if self.is_bound else None
        if not password or not self.errors:
            return
        for errors in self.errors.values():
            messages = [str(message).replace(password, "***") for message in errors]
            if messages != list(errors):
                errors[:] = messages

    def imap_changes(self, *, adding: bool) -> dict[str, Any]:
        """The `imap` dict that accounts.services takes, with only what changed."""
        names = {
            "imap_host": "host",
            "imap_port": "port",
            "imap_security": "security",
            "imap_username": "username",
        }
        imap = {
            key: self.cleaned_data[field]
            for field, key in names.items()
            if (adding or field in self.changed_data) and self.cleaned_data.get(field) not in ("",)
        }
        if adding or "imap_folders_text" in self.changed_data:
            text = self.cleaned_data.get("imap_folders_text") or ""
            imap["folders"] = [part.strip() for part in text.split(",") if part.strip()]
        if self.cleaned_data.get("imap_password"):
            imap["password"] = self.cleaned_data["imap_password"]
        return imap


class ScheduleForm(forms.ModelForm):
    """A schedule's add and edit page. The values are checked by the rules the API uses
    (jobs.rules, the task kind's producer) so that an error shows on its field; the services
    check them again when the admin saves through them."""

    kind = forms.ChoiceField(choices=[])
    params = PrettyJSONField(required=False, help_text="The task's params (a JSON object).")
    interval_seconds = forms.IntegerField(
        required=False,
        min_value=rules.MIN_INTERVAL_SECONDS,
        max_value=rules.MAX_INTERVAL_SECONDS,
        help_text="Every this many seconds (300: every 5 minutes).",
    )
    cron = forms.CharField(
        required=False, max_length=200, help_text="For example */15 * * * * or 0 9 * * MON-FRI."
    )
    time_zone = forms.ChoiceField(
        choices=[(zone, zone) for zone in sorted(rules.TIME_ZONES)],
        initial="UTC",
        help_text="The cron expression's time zone.",
    )
    next_run_at = forms.DateTimeField(
        required=False, help_text="UTC, YYYY-MM-DD HH:MM:SS. Empty: the cadence's first slot."
    )

    # The form's fields and the names the services take.
    CADENCE = {
        "interval_seconds": "interval_seconds",
        "cron": "cron",
        "time_zone": "timezone",
        "next_run_at": "next_run_at",
    }

    class Meta:
        model = Schedule
        fields = [
            "account",
            "kind",
            "params",
            "interval_seconds",
            "cron",
            "time_zone",
            "next_run_at",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = self.fields.get("kind")
        if isinstance(kind, forms.ChoiceField):
            kind.choices = [(name, name) for name in task_kind_names()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        interval, cron = cleaned.get("interval_seconds"), (cleaned.get("cron") or "").strip()
        cleaned["cron"] = cron
        if interval and cron:
            self.add_error("cron", "Give an interval or a cron expression, not both.")
        elif not interval and not cron and "interval_seconds" not in self.errors:
            self.add_error("interval_seconds", "Give an interval or a cron expression.")
        elif cron:
            try:
                rules.clean_cron(cron)
            except ValidationFailed as exc:
                self.add_error("cron", exc.fields.get("cron", [exc.message])[0])
        next_run_at = cleaned.get("next_run_at")
        if next_run_at is not None:
            problem = client_input.utc_problem(next_run_at)
            if problem:
                self.add_error("next_run_at", f"This date-time {problem}")
        if "kind" in self.fields and cleaned.get("kind"):
            try:
                services.check_schedule_params(cleaned["kind"], cleaned.get("params") or {})
            except ValidationFailed as exc:
                for field, errors in exc.fields.items():
                    self.add_error(field if field in self.fields else None, errors)
        return cleaned

    def cadence(self) -> dict[str, Any]:
        """The cadence as the services take it: the interval or the cron expression that is
        set, the time zone, the next run (None: the first slot)."""
        data = self.cleaned_data
        chosen = (
            {"cron": data["cron"]}
            if data.get("cron")
            else {"interval_seconds": data.get("interval_seconds")}
        )
        return {
            **chosen,
            "timezone": data.get("time_zone") or "UTC",
            "next_run_at": data.get("next_run_at"),
        }

    def cadence_changed(self, name: str) -> bool:
        if name in ("interval_seconds", "cron"):
            return bool({"interval_seconds", "cron"} & set(self.changed_data))
        field = {value: key for key, value in self.CADENCE.items()}[name]
        return field in self.changed_data
