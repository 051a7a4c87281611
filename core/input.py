"""What a client may send: the rules of the one input boundary, each defined once.

Everything a client sends passes these rules before it is used: the API's JSON parser
(core.api.parsers), the query-string check (core.api.middleware), the headers the API reads
(Authorization, Idempotency-Key), the job filters and the admin's JSON and date-time fields.
What fails them is a 400 naming the field, so that nothing reaches the database that the
database cannot store, or that a later read could not load:

- text: no NUL character (PostgreSQL stores none, in text or in jsonb) and no lone surrogate
  (not Unicode: it cannot be encoded as UTF-8, for the database or for the answer), and a
  bounded length;
- JSON: at most MAX_DEPTH levels of arrays and objects, checked on the raw text before it is
  parsed (`json.loads` recurses, and deep input would end in a RecursionError), and finite
  numbers only;
- date-times: converted to UTC, whose instant must lie within the years 1 to 9999 (Python's
  range: `0001-01-01T00:00:00+14:00` is valid ISO 8601, but its UTC instant is in year 0, which
  PostgreSQL stores and no later read can load).

Error messages that quote client input quote it through `shown`, bounded and escaped.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import unquote_to_bytes

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import QueryDict

from core.errors import ValidationFailed

MAX_DEPTH = 32
# The longest string a JSON body may hold anywhere (field rules are often stricter), and the
# longest key of an object.
MAX_STRING = 65_536
MAX_KEY = 1_000
# Query strings: parameter names are short words; values are filters, ids and cursors.
MAX_QUERY_NAME = 100
MAX_QUERY_VALUE = 4_096

# NUL and the surrogate code points: a `str` holding one did not come from valid UTF-8 text
# (the JSON decoder joins a valid escaped pair into one code point).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class TooDeep(ValidationFailed):
    code = "too_deep"


# --- text ----------------------------------------------------------------------------------------


def text_problem(value: str, max_length: int = MAX_STRING) -> str | None:
    """Why `value` cannot be taken as text, or None when it can."""
    if len(value) > max_length:
        return f"is too long ({max_length:,} characters at most)."
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000)."
    return "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text."


def check_text(field: str, value: str, max_length: int = MAX_STRING) -> str:
    """`value`, or a 400 naming `field`."""
    problem = text_problem(value, max_length)
    if problem:
        raise ValidationFailed.for_field(field, problem)
    return value


def validate_text(value: Any) -> None:
    """The text rule as a Django validator, for form fields."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise DjangoValidationError(f"This value {problem}", code="unstorable_text")


def is_printable_ascii(value: str, max_length: int) -> bool:
    """The rule of the headers the API reads (API keys, Idempotency-Key)."""
    return 0 < len(value) <= max_length and value.isascii() and value.isprintable()


def shown(value: Any, limit: int = 100) -> str:
    """`value` as an error message may quote it: at most `limit` characters, control
    characters and surrogates escaped, so that a message neither grows with the input nor
    fails to render."""
    text = value if isinstance(value, str) else str(value)
    text = _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "…"


# --- JSON ----------------------------------------------------------------------------------------

# The tokens that matter for nesting: a whole JSON string (with its escapes), a bracket, or a
# quote that opens a string never closed. Each string is matched once from its opening quote and
# the scan stops at an unclosed one, so the scan is linear in the text (a sub() over strings
# would retry at every later quote of an unclosed string: quadratic).
_NESTING_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.S)


def json_depth_exceeds(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON `text` nests arrays and objects deeper than `limit`, told without
    parsing it (and so without recursion)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: too few brackets to nest that deep
    depth = 0
    for match in _NESTING_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
        elif token == '"':
            return False  # a string never closed: malformed, as json.loads will say
    return False


def _too_deep(path: str = "") -> TooDeep:
    message = f"is nested deeper than {MAX_DEPTH} levels."
    return TooDeep(
        f"The JSON is nested deeper than {MAX_DEPTH} levels.",
        fields={path or "non_field_errors": [message]},
    )


def check_json(value: Any, path: str = "") -> Any:
    """`value` (parsed JSON) if every key and string in it, at any depth, is text by the text
    rule, every number is finite and it nests MAX_DEPTH levels at most; else a 400 naming the
    path of the first bad value (`payload.a.0.b`). Walks without recursion, and builds a path
    only for the value it reports."""
    # Each entry: a value, its depth and its trail, (parent trail, key) back to the root.
    stack: list[tuple[Any, int, Any]] = [(value, 0, None)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth, trail = pop()
        kind = type(item)
        if kind is str:
            problem = text_problem(item)
            if problem:
                raise ValidationFailed.for_field(_path(path, trail), problem)
        elif kind is float:
            if not math.isfinite(item):
                raise ValidationFailed.for_field(_path(path, trail), "is a number out of range.")
        elif kind is dict or kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                raise _too_deep(_path(path, trail, root=""))
            if kind is dict:
                for key, child in item.items():
                    if type(key) is not str:
                        key = str(key)
                    problem = text_problem(key, MAX_KEY)
                    if problem:
                        raise ValidationFailed.for_field(
                            _path(path, trail), f"has a key that {problem}"
                        )
                    if type(child) in _WALKED:
                        push((child, depth + 1, (trail, key)))
            else:
                for index, child in enumerate(item):
                    if type(child) in _WALKED:
                        push((child, depth + 1, (trail, index)))
    return value


_WALKED = frozenset({str, float, dict, list, tuple})


def _path(path: str, trail: Any, root: str = "non_field_errors") -> str:
    steps: list[str] = []
    while trail is not None:
        trail, step = trail
        steps.append(str(step))
    steps.extend([path] if path else [])
    return ".".join(reversed(steps)) or root


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON.")


def loads(text: str, path: str = "") -> Any:
    """Parse JSON text from a client: depth checked first, then parsed (NaN and Infinity
    refused), then every string and number checked (check_json, paths under `path`).
    Malformed JSON raises ValueError, as `json.loads` does; the rules raise ValidationFailed
    naming the path."""
    if json_depth_exceeds(text):
        raise _too_deep(path)
    return check_json(json.loads(text, parse_constant=_refuse_constant), path)


# --- query strings -------------------------------------------------------------------------------


def _query_text(raw: bytes) -> str | None:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_query_string(raw: bytes) -> None:
    """A raw query string: every name and value is UTF-8 text (after percent-decoding, which
    Django does leniently, turning bad bytes into U+FFFD) by the text rule; else a 400 naming
    the parameter."""
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _query_text(raw_name)
        problem = (
            "has a parameter name that is not UTF-8 text."
            if name is None
            else text_problem(name, MAX_QUERY_NAME)
        )
        if problem:
            if name is not None:
                problem = f"has a parameter name that {problem}"
            raise ValidationFailed.for_field("query_string", problem)
        assert name is not None  # refused above otherwise
        value = _query_text(raw_value)
        if value is None:
            raise ValidationFailed.for_field(name, "is not UTF-8 text.")
        check_text(name, value, MAX_QUERY_VALUE)


def check_form(data: QueryDict) -> None:
    """A parsed form body (a QueryDict): every name and value is text by the text rule (Django
    has already bounded the body's size and field count); else a 400 naming the field."""
    for name, values in data.lists():
        check_text("form", name, MAX_QUERY_NAME)
        for value in values:
            if isinstance(value, str):
                check_text(name, value, len(value))


# --- date-times ----------------------------------------------------------------------------------


def utc_problem(value: datetime) -> str | None:
    """Why the aware `value` has no UTC instant a later read can load, or None."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        return "is outside the years 1 to 9999 once converted to UTC."
    return None


def to_utc(field: str, value: datetime) -> datetime:
    """The aware `value` in UTC, or a 400 naming `field` when its UTC instant is out of
    range."""
    problem = utc_problem(value)
    if problem:
        raise ValidationFailed.for_field(field, problem)
    return value.astimezone(UTC)
