"""JSON containment with PostgreSQL's semantics (`jsonb @> jsonb`) on every database.

On PostgreSQL, `JsonContains(field, template)` is the `@>` operator (what Django's `__contains`
lookup on a JSONField writes), which a GIN index on the column answers. SQLite has no such
operator: there it calls `contains` below, registered on each connection as a SQL function
(core.apps), so a filter means the same on both, row by row and without an index (slower, never
different). `contains` is also the reference the tests check PostgreSQL's answers against.

The rules of `@>` (PostgreSQL manual, "jsonb Containment and Existence"):
- an object contains another when it has each of its keys with a value that contains that key's
  value;
- an array contains another when each element of the other is contained by some element of it
  (order and duplicates do not matter); a scalar element is matched by an equal scalar element;
- scalars are contained by equal scalars of the same JSON type (numbers compare as numbers:
  1 and 1.0 are equal; true is not 1);
- at the top level only, an array contains a scalar it has as an element.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import BooleanField, Func, JSONField, Value
from django.db.models.sql.compiler import SQLCompiler

SQLITE_FUNCTION = "core_json_contains"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "other"


def _contains(doc: Any, template: Any) -> bool:
    kind = _kind(template)
    if kind == "object":
        return isinstance(doc, dict) and all(
            key in doc and _contains(doc[key], value) for key, value in template.items()
        )
    if kind == "array":
        if not isinstance(doc, list):
            return False
        return all(any(_contains(element, item) for element in doc) for item in template)
    return _kind(doc) == kind and doc == template


def contains(doc: Any, template: Any) -> bool:
    """Whether the JSON value `doc` contains `template`, as `doc::jsonb @> template::jsonb`."""
    if isinstance(doc, list) and _kind(template) not in ("array", "object"):
        return any(_kind(element) == _kind(template) and element == template for element in doc)
    return _contains(doc, template)


def sqlite_json_contains(doc: str | None, template: str | None) -> int | None:
    """`contains` on JSON text, as SQLite calls it (NULL in, NULL out: SQL's rule)."""
    if doc is None or template is None:
        return None
    try:
        return int(contains(json.loads(doc), json.loads(template)))
    except (ValueError, RecursionError):
        # Text that is not JSON, or JSON nested deeper than Python can read (core.unreadable):
        # it contains nothing a filter could ask for.
        return 0


def register_sqlite_function(sender: Any, connection: Any, **kwargs: Any) -> None:
    """connection_created receiver (core.apps): on SQLite, the containment function."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            SQLITE_FUNCTION, 2, sqlite_json_contains, deterministic=True
        )


class JsonContains(Func):
    """`expression` contains the JSON value `template`: a condition for `filter()`."""

    output_field = BooleanField()
    # SQLite's (registered by register_sqlite_function); PostgreSQL's is an operator.
    function = SQLITE_FUNCTION

    def __init__(self, expression: Any, template: Any) -> None:
        super().__init__(expression, Value(template, output_field=JSONField()))

    def as_postgresql(
        self, compiler: SQLCompiler, connection: Any, **extra_context: Any
    ) -> tuple[str, Any]:
        return super().as_sql(compiler, connection, template="(%(expressions)s)", arg_joiner=" @> ")
