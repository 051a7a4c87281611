"""Cursor pages ordered by id, newest first.

Ids sort by creation time (ULIDs; audit events have increasing integers), so a page is an index
range scan `WHERE id < cursor ORDER BY id DESC LIMIT n+1`: constant time at any depth, stable
while rows are added, and never a COUNT. A cursor is a direction and the id of a row of the last
page (`n.job_...` for the next page, `p.job_...` for the previous one): clients take it from a
page as it is, and the OpenAPI schema states its pattern, so any cursor the schema allows is one
the server takes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from core.api.serializers import json_integer
from core.errors import ValidationFailed
from core.ids import id_pattern, is_valid_id

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# A text page reads the base rows in order, SCAN_FIRST first, and at most SCAN_MAX before it asks
# the condition's own index (see Scan).
SCAN_FIRST = 300
SCAN_MAX = 3_000
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def _encode(direction: str, value: Any) -> str:
    return f"{direction}.{value}"


def _decode(cursor: str, parse_id: Callable[[str], Any]) -> tuple[str, Any]:
    bad = ValidationFailed.for_field("cursor", "is not a cursor this API gave out.")
    if not isinstance(cursor, str) or len(cursor) > 200:
        raise bad
    direction, dot, raw = cursor.partition(".")
    if direction not in {"n", "p"} or not dot:
        raise bad
    try:
        return direction, parse_id(raw)
    except (TypeError, ValueError):
        raise bad from None


def cursor_pattern(parse_id: Callable[[str], Any]) -> str:
    """The pattern of the cursors of a list whose ids `parse_id` reads."""
    id_pattern: str = parse_id.pattern[2:-2]  # type: ignore[attr-defined]
    return r"\A[np]\." + id_pattern + r"\Z"


def parse_limit(value: Any) -> int:
    """`limit` from a query string (digits) or a JSON body (an integer): 1 to MAX_LIMIT."""
    if value is None:
        return DEFAULT_LIMIT
    limit = int(value) if isinstance(value, str) and _DIGITS.fullmatch(value) else None
    if not isinstance(value, str):
        limit = json_integer(value)
    if limit is None:
        raise ValidationFailed.for_field("limit", "must be a whole number.")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed.for_field("limit", f"must be between 1 and {MAX_LIMIT}.")
    return limit


def _pk(item: Any) -> Any:
    return item["id"] if isinstance(item, dict) else item.pk


@dataclass(frozen=True)
class Scan:
    """A page's condition that may match most rows or almost none (text in the error detail),
    and the queryset without it.

    PostgreSQL cannot tell the two apart when it plans: its estimate for a `LIKE '%text%'` is a
    guess, and with the trigram index it chose a bitmap of every match in the table, sorted,
    for a common word too (333 ms for one page of an account of 40,000 jobs, where reading the
    account's newest rows in order and keeping the matching ones needs a few hundred rows).
    So the page reads the base rows in order, in windows, with the condition computed for each
    row as a column (not in WHERE, so nothing can move it onto another index). The first window
    (SCAN_FIRST rows) is a sample: from the share of its rows that match, the page sizes the
    next window to what it still needs, and when that share cannot fill the page within
    SCAN_MAX rows read (no match at all, for a full page), it asks the condition in WHERE, below
    the last row read, where the condition's own index serves a rare match. Same rows, same
    order as the plain query."""

    base: QuerySet[Any]
    condition: Q

    def first(self, limit: int, below: Any) -> list[Any]:
        """The first `limit` rows of base matching the condition, newest first, below `below`."""
        found: list[Any] = []
        hit = ExpressionWrapper(self.condition, output_field=BooleanField())
        read, window = 0, SCAN_FIRST
        while window > 0:
            rows = self.base.order_by("-pk")
            if below is not None:
                rows = rows.filter(pk__lt=below)
            marks = list(rows.annotate(scan_hit=hit).values_list("pk", "scan_hit")[:window])
            found += [pk for pk, matches in marks if matches]
            if len(found) >= limit or len(marks) < window:
                return self._rows(found[:limit])
            read, below = read + window, marks[-1][0]
            # The rows still needed at the share seen so far (none seen: as if one were), and a
            # fifth more, so that most pages end with this window.
            needed = (limit - len(found)) * read // max(len(found), 1)
            window = min(needed + needed // 5, SCAN_MAX - read) if read + needed <= SCAN_MAX else 0
        rest = self.base.filter(self.condition, pk__lt=below).order_by("-pk")
        return self._rows(found) + list(rest[: limit - len(found)])

    def _rows(self, ids: list[Any]) -> list[Any]:
        return list(self.base.filter(pk__in=ids).order_by("-pk")) if ids else []


def paginate(
    queryset: QuerySet[Any],
    *,
    limit: int,
    cursor: str | None,
    parse_id: Callable[[str], Any] = str,
    scan: Scan | None = None,
) -> Page:
    """One page of `queryset` (of model instances or of `.values()` rows with an "id"), newest
    first, after (or before) `cursor`. With `scan` (queryset is its base with its condition),
    the next pages are read as Scan says."""
    if cursor in (None, ""):
        direction, boundary = "n", None
    else:
        direction, boundary = _decode(cursor, parse_id)
    if direction == "n":
        qs = queryset.order_by("-pk")
        if boundary is not None:
            qs = qs.filter(pk__lt=boundary)
        rows = scan.first(limit + 1, boundary) if scan is not None else list(qs[: limit + 1])
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


_INT_ID = r"\A[0-9]{1,18}\Z"  # below 2**63: a bigint on every database


def int_id(raw: str) -> int:
    """Parse an integer id of a cursor (audit events)."""
    if not re.fullmatch(_INT_ID, raw):
        raise ValueError(raw)
    return int(raw)


int_id.pattern = _INT_ID  # type: ignore[attr-defined]


def prefixed_id(prefix: str) -> Callable[[str], str]:
    """A parser of the public ids of one type (`job_...`) in a cursor."""

    def parse(raw: str) -> str:
        if not is_valid_id(raw, prefix):
            raise ValueError(raw)
        return raw

    parse.pattern = id_pattern(prefix)  # type: ignore[attr-defined]
    return parse
