"""The rules for what clients may write into a job, each defined once: notes, payloads, labels,
resolution codes, the fields of a PATCH and their values, and what audit data can hold. The
services call them; the filters use the same label rule (jobs.filters)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.api.serializers import json_integer
from core.errors import ValidationFailed
from core.input import shown, text_problem, to_utc
from jobs.states import MUTABLE_FIELDS

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_LABELS = 20
# A resolution code: short, lower case ("ignored", "fixed", "cancelled", "fixed.upstream").
RESOLUTION_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,49}$")
# A label: a key and a string value. The key starts with a letter and goes on with letters,
# digits, - and single _ (50 at most): it is always a plain key, never read as an array index
# ("0", "1_0", "-1") or a lookup ("team__regex"), by the ORM or anyone. The value is text of 200
# characters at most, without a comma or surrounding spaces: the filter `label=key:value`
# (comma-separated, stripped) can then find every value a job may carry.
LABEL_KEY = re.compile(r"^[A-Za-z](?:[A-Za-z0-9-]|_(?!_)){0,49}$")
LABEL_KEY_RULE = "a letter, then letters, digits, - and single _; 50 at most"
MAX_LABEL_VALUE = 200
MAX_NOTE = 2000


def clean_note(note: object, *, required: bool) -> str:
    """An operator's note (why): a string, stripped, required for some commands."""
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise ValidationFailed.for_field("note", "must be a string.")
    note = note.strip()
    if required and not note:
        raise ValidationFailed.for_field("note", "is required: say why.")
    if len(note) > MAX_NOTE:
        raise ValidationFailed.for_field("note", f"is too long ({MAX_NOTE} characters at most).")
    return note


def validate_payload(payload: Any) -> None:
    """A job's payload: a JSON object of MAX_PAYLOAD_BYTES at most."""
    if not isinstance(payload, dict):
        raise ValidationFailed.for_field("payload", "must be an object.")
    try:
        size = len(json.dumps(payload))
    except (TypeError, ValueError):
        raise ValidationFailed.for_field("payload", "must be JSON.") from None
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationFailed.for_field(
            "payload", f"is too large ({MAX_PAYLOAD_BYTES} bytes at most)."
        )


def validate_labels(labels: Any) -> None:
    """A job's labels: at most MAX_LABELS, each key and value by the label rule."""
    if not isinstance(labels, dict):
        raise ValidationFailed.for_field("labels", "must be an object of string values.")
    if len(labels) > MAX_LABELS:
        raise ValidationFailed.for_field("labels", f"at most {MAX_LABELS} labels.")
    for key, value in labels.items():
        problem = label_problem(key, value)
        if problem:
            raise ValidationFailed.for_field("labels", problem)


def is_label_key(key: object) -> bool:
    """The one rule for label keys, for writes and filters alike."""
    return isinstance(key, str) and LABEL_KEY.match(key) is not None


def label_problem(key: object, value: object) -> str | None:
    """What is wrong with one label (key and value), or None: the one label rule, for writes
    and filters alike."""
    if not is_label_key(key):
        return f"bad key {shown(repr(key), 60)} ({LABEL_KEY_RULE})."
    if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
        return f"value of {key!r} must be a string ({MAX_LABEL_VALUE} characters at most)."
    if "," in value or value != value.strip():
        return f"value of {key!r} may hold no comma and no surrounding spaces."
    problem = text_problem(value)
    return f"value of {key!r} {problem}" if problem else None


def int_in(name: str, value: Any, low: int, high: int) -> int:
    """An integer (JSON's: 3 or 3.0, not a bool) within [low, high]."""
    value = json_integer(value)
    if value is None:
        raise ValidationFailed.for_field(name, "must be an integer.")
    if not low <= value <= high:
        raise ValidationFailed.for_field(name, f"must be between {low} and {high}.")
    return int(value)


def clean_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a PATCH, each checked; 400 naming an immutable field."""
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationFailed(
            "Nothing to update: give one of " + ", ".join(MUTABLE_FIELDS) + ".",
            fields={"non_field_errors": ["No field to update."]},
        )
    immutable = sorted(set(changes) - set(MUTABLE_FIELDS))
    if immutable:
        raise ValidationFailed(
            f"Field(s) cannot be changed: {', '.join(immutable)}. "
            f"Mutable fields: {', '.join(MUTABLE_FIELDS)}.",
            code="immutable_field",
            fields={name: ["This field cannot be changed."] for name in immutable},
        )
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "priority":
            cleaned[name] = int_in(name, value, -1000, 1000)
        elif name == "max_attempts":
            cleaned[name] = int_in(name, value, 1, 100)
        elif name == "run_at":
            cleaned[name] = clean_datetime(name, value)
        elif name == "payload":
            validate_payload(value)
            cleaned[name] = value
        elif name == "labels":
            validate_labels(value)
            cleaned[name] = value
    return cleaned


def clean_datetime(name: str, value: Any) -> datetime:
    """An ISO 8601 date-time with a time zone, in UTC; its UTC instant within the years 1 to
    9999 (core.input.to_utc)."""
    parsed = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise ValidationFailed.for_field(name, "must be an ISO 8601 date-time.")
    if timezone.is_naive(parsed):
        raise ValidationFailed.for_field(name, "must include a time zone (for example Z).")
    return to_utc(name, parsed)


def jsonable(value: Any) -> Any:
    """A value as audit data can store it (JSON)."""
    return value.isoformat() if isinstance(value, datetime) else value
