"""The rules for what clients may write into a job, each defined once: notes, payloads, labels,
resolution codes, the fields of a PATCH and their values, and what audit data can hold; and
into a sync schedule: its cadence (interval bounds, the cron grammar, time zones) and what its
PATCH may change. The services call them; the filters use the same label rule (jobs.filters),
the admin's schedule form the same cadence rules."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import available_timezones

from cronsim import CronSim, CronSimError
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


# --- schedules ---------------------------------------------------------------------------------
# A schedule's cadence: an interval in seconds, or a cron expression of five fields (minute,
# hour, day of month, month, day of week) evaluated by cronsim in the schedule's time zone.

MIN_INTERVAL_SECONDS = 60
MAX_INTERVAL_SECONDS = 31 * 86400
MAX_SCHEDULE_PARAMS_BYTES = 16 * 1024


def _ci(word: str) -> str:
    """`word` in any letter case (cronsim reads names in any case)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _numbers(low: int, high: int) -> str:
    """The integers from `low` to `high` (0 to 99), without leading zeros."""
    parts = []
    for tens in range(9, -1, -1):
        first, last = max(low, tens * 10), min(high, tens * 10 + 9)
        if first > last:
            continue
        digits = f"[{first % 10}-{last % 10}]" if first != last else str(first % 10)
        parts.append(f"{tens}{digits}" if tens else digits)
    return "|".join(parts)


def _field(
    low: int,
    high: int,
    names: tuple[str, ...] = (),
    *,
    starts: range | frozenset[int] | None = None,
    star: bool = True,
) -> str:
    """One item of a cron field: `*`, a value, or a range whose end is not before its start
    (both numbers or both names), each with an optional step. `starts`: only the values and
    ranges that start in it (None: all); `star`: whether `*` is one of the items."""
    allowed = sorted(range(low, high + 1) if starts is None else starts)
    step = f"(?:/(?:{_numbers(1, high)}))?"
    name_of = dict(enumerate(names, start=low))
    ranges = [f"{a}-(?:{_numbers(a, high)})" for a in allowed]
    ranges += [
        f"{_ci(name_of[a])}-(?:{'|'.join(_ci(n) for v, n in name_of.items() if v >= a)})"
        for a in allowed
        if a in name_of
    ]
    values = [_numbers(a, a) for a in allowed] + [_ci(name_of[a]) for a in allowed if a in name_of]
    items = [f"(?:{'|'.join(ranges + values)}){step}"]
    if star:
        items.insert(0, f"\\*{step}")
    return f"(?:{'|'.join(items)})"


def _list(item: str, *, first: str | None = None, some: str | None = None) -> str:
    """A comma-separated list of `item`s; its first one a `first`, or at least one a `some`."""
    if some is not None:
        return f"(?:{item},)*{some}(?:,{item})*"
    return f"{first or item}(?:,{item})*"


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_LONG_MONTHS = frozenset({1, 3, 5, 7, 8, 10, 12})
_LAST = (_ci("LW"), _ci("L"))
_DOM_ITEM = f"(?:{_field(1, 31)}|{'|'.join(_LAST)})"
# An item of a day of month that starts before the 30th (`*`, `L` and `LW` do). cronsim refuses
# a schedule whose days of month are the 30th or 31st only, in months that have no such day,
# when the day of week is `*` (both must match): such days of month need a month of 31 days or
# a day of week other than `*` here (so 30 April is refused too: a simplification, documented).
_DOM_EARLY_ITEM = f"(?:{_field(1, 31, starts=range(1, 30))}|{'|'.join(_LAST)})"
_DOM_LATE = _list(_field(1, 31, starts=range(30, 32), star=False))
_MONTH_ITEM = _field(1, 12, _MONTHS)
_MONTH_WITH_LONG = _list(_MONTH_ITEM, some=_field(1, 12, _MONTHS, starts=_LONG_MONTHS))
_DOW_NAMES = "|".join(_ci(day) for day in _DAYS)
_DOW_SPECIAL = f"[0-7]{_ci('L')}|(?:[0-7]|{_DOW_NAMES})#[1-5]"  # last Friday, 2nd Monday
_DOW_ITEM = f"(?:{_field(0, 7, _DAYS)}|{_DOW_SPECIAL})"
_DOW_NOT_STAR = _list(_DOW_ITEM, first=f"(?:{_field(0, 7, _DAYS, star=False)}|{_DOW_SPECIAL})")
_MINUTE, _HOUR = _list(_field(0, 59)), _list(_field(0, 23))
_DOM, _MONTH, _DOW = _list(_DOM_ITEM), _list(_MONTH_ITEM), _list(_DOW_ITEM)
# The cron expressions a schedule may have: exactly what cronsim accepts, less the refused
# late days above, with single spaces between the fields and none around them, steps of at
# most the field's largest value and no leading zeros.
CRON = re.compile(
    rf"^{_MINUTE} {_HOUR} (?:"
    rf"{_list(_DOM_ITEM, some=_DOM_EARLY_ITEM)} {_MONTH} {_DOW}"
    rf"|{_DOM_LATE} {_MONTH} {_DOW_NOT_STAR}"
    rf"|{_DOM_LATE} {_MONTH_WITH_LONG} {_DOW})$"
)
CRON_RULE = (
    "five fields separated by single spaces (minute hour day-of-month month day-of-week), "
    "for example */5 * * * * or 0 9 * * MON-FRI"
)
# The IANA time zones a schedule may name: UTC and the zones of the tz database this host knows
# (the system's or the tzdata package's) that are named by region (Europe/Riga, America/New_York):
# not the legacy aliases (US/Eastern, EST5EDT, Etc/GMT+5, ...), whose names also collide with each
# other when a client generated from the schema makes identifiers of them (GMT0, GMT-0, GMT+0).
_REGIONS = frozenset(
    {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe"}
    | {"Indian", "Pacific"}
)
TIME_ZONES = frozenset(
    {"UTC"} | {zone for zone in available_timezones() if zone.split("/")[0] in _REGIONS}
)
# What a schedule's PATCH may change: its cadence and when it runs next. Its kind and params
# are what it is: another task is another schedule.
SCHEDULE_MUTABLE_FIELDS = ("interval_seconds", "cron", "timezone", "next_run_at")


def clean_cron(value: Any) -> str:
    """A cron expression by the CRON rule, which cronsim evaluates."""
    if not isinstance(value, str) or len(value) > 200 or not CRON.fullmatch(value):
        raise ValidationFailed.for_field("cron", f"must be {CRON_RULE}.")
    try:
        next(CronSim(value, timezone.now()))
    except (CronSimError, ValueError, OverflowError) as exc:  # not expected: CRON is narrower
        raise ValidationFailed.for_field("cron", f"is refused by cronsim ({exc}).") from None
    return value


def clean_time_zone(value: Any) -> str:
    if not isinstance(value, str) or value not in TIME_ZONES:
        raise ValidationFailed.for_field("timezone", "must be an IANA time zone, such as UTC.")
    return value


def clean_cadence(data: Mapping[str, Any]) -> dict[str, Any]:
    """The cadence fields given in `data` (`interval_seconds`, `cron`, `timezone`,
    `next_run_at`), as model fields; giving an interval clears the cron expression and the
    other way round, and giving both is a 400."""
    if "interval_seconds" in data and "cron" in data:
        raise ValidationFailed(
            "Give interval_seconds or cron, not both.",
            fields={"cron": ["Not with interval_seconds."]},
        )
    cleaned: dict[str, Any] = {}
    if "interval_seconds" in data:
        cleaned["interval_seconds"] = int_in(
            "interval_seconds", data["interval_seconds"], MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS
        )
        cleaned["cron"] = ""
    if "cron" in data:
        cleaned["cron"] = clean_cron(data["cron"])
        cleaned["interval_seconds"] = None
    if "timezone" in data:
        cleaned["time_zone"] = clean_time_zone(data["timezone"])
    if "next_run_at" in data:
        cleaned["next_run_at"] = clean_datetime("next_run_at", data["next_run_at"])
    return cleaned


def clean_schedule_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a schedule's PATCH, as model fields; 400 naming an immutable field."""
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationFailed(
            "Nothing to update: give one of " + ", ".join(SCHEDULE_MUTABLE_FIELDS) + ".",
            fields={"non_field_errors": ["No field to update."]},
        )
    immutable = sorted(set(changes) - set(SCHEDULE_MUTABLE_FIELDS))
    if immutable:
        raise ValidationFailed(
            f"Field(s) cannot be changed: {', '.join(immutable)}. "
            f"Mutable fields: {', '.join(SCHEDULE_MUTABLE_FIELDS)}.",
            code="immutable_field",
            fields={name: ["This field cannot be changed."] for name in immutable},
        )
    return clean_cadence(changes)
