"""Cursor pages ordered by id, newest first.

Ids sort by creation time (ULIDs; audit events have increasing integers), so a page is an index
range scan `WHERE id < cursor ORDER BY id DESC LIMIT n+1`: constant time at any depth, stable
while rows are added, and never a COUNT. The cursor is opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from core.errors import ValidationFailed
from core.ids import is_valid_id

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def _encode(direction: str, value: Any) -> str:
    return base64.urlsafe_b64encode(f"{direction}:{value}".encode()).decode().rstrip("=")


def _decode(cursor: str, parse_id: Callable[[str], Any]) -> tuple[str, Any]:
    bad = ValidationFailed.for_field("cursor", "is not a cursor this API gave out.")
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    direction, _, raw = text.partition(":")
    if direction not in {"n", "p"}:
        raise bad
    try:
        return direction, parse_id(raw)
    except (TypeError, ValueError):
        raise bad from None


def parse_limit(value: Any) -> int:
    """`limit` from a query string or a JSON body: a whole number from 1 to MAX_LIMIT."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationFailed.for_field("limit", "must be a whole number.")
    try:
        limit = int(value)
    except ValueError:
        raise ValidationFailed.for_field("limit", "must be a whole number.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed.for_field("limit", f"must be between 1 and {MAX_LIMIT}.")
    return limit


def _pk(item: Any) -> Any:
    return item["id"] if isinstance(item, dict) else item.pk


def paginate(
    queryset: QuerySet[Any],
    *,
    limit: int,
    cursor: str | None,
    parse_id: Callable[[str], Any] = str,
) -> Page:
    """One page of `queryset` (of model instances or of `.values()` rows with an "id"), newest
    first, after (or before) `cursor`."""
    if cursor in (None, ""):
        direction, boundary = "n", None
    else:
        direction, boundary = _decode(cursor, parse_id)
    if direction == "n":
        qs = queryset.order_by("-pk")
        if boundary is not None:
            qs = qs.filter(pk__lt=boundary)
        rows = list(qs[: limit + 1])
        more, items = len(rows) > limit, rows[:limit]
        next_cursor = _encode("n", _pk(items[-1])) if more and items else None
        previous_cursor = _encode("p", _pk(items[0])) if boundary is not None and items else None
    else:
        rows = list(queryset.order_by("pk").filter(pk__gt=boundary)[: limit + 1])
        more, items = len(rows) > limit, list(reversed(rows[:limit]))
        previous_cursor = _encode("p", _pk(items[0])) if more and items else None
        next_cursor = _encode("n", _pk(items[-1])) if items else _encode("n", boundary)
    return Page(items, next_cursor, previous_cursor)


def page_params(data: Mapping[str, Any]) -> tuple[int, str | None]:
    """(limit, cursor) from a query string or a JSON body."""
    getter = data.get
    limit = parse_limit(getter("limit"))
    cursor = getter("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise ValidationFailed.for_field("cursor", "must be a string.")
    return limit, cursor or None


def int_id(raw: str) -> int:
    """Parse an integer id of a cursor (audit events)."""
    if not raw.isdigit() or len(raw) > 19:
        raise ValueError(raw)
    return int(raw)


def prefixed_id(prefix: str) -> Callable[[str], str]:
    """A parser of the public ids of one type (`job_...`) in a cursor."""

    def parse(raw: str) -> str:
        if not is_valid_id(raw, prefix):
            raise ValueError(raw)
        return raw

    return parse
