"""Values a database row holds that Python cannot: loaded as an `Unreadable` marker instead of
raising, so one such row cannot make a page or a list that contains it fail.

PostgreSQL's timestamptz spans 4713 BC to 294276 AD and ±infinity; Python's datetime, years 1
to 9999. A timestamp outside that range (written by SQL, an old bug, a restore) makes psycopg
raise DataError while it reads the row, and with it every query whose result holds the row.
Likewise JSON nested deeper than Python's recursion limit fails json.loads with RecursionError
(jobs.models.ReadableJSONField). Where such a value is read, it comes back as an `Unreadable`:
a `str` holding the database's own text for the value (`'infinity'`, `'0001-12-31 10:00:00+00
BC'`), so a page shows it as it is stored, marked for what it is, and code that expects a
datetime or a dict fails on that row alone. The system's own steps (the scheduler's rounds, the
worker) check for it and take such a row out of the way (jobs.services.quarantine).

On SQLite (a development database) the driver parses datetimes itself: nothing changes there.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# Python's datetime covers years 1 to 9999.
DATETIME_RANGE = "outside the years 1 to 9999 a Python datetime can hold"


class Unreadable(str):
    """A value as the database spells it, which Python cannot hold as the field's type;
    `reason` says why."""

    reason: str

    def __new__(cls, text: str, reason: str) -> Unreadable:
        value = super().__new__(cls, text)
        value.reason = reason
        return value

    def __repr__(self) -> str:
        return f"Unreadable({str(self)!r}, {self.reason!r})"


def unreadable_fields(instance: Any) -> dict[str, Unreadable]:
    """The loaded fields of a model instance that hold an Unreadable, by name."""
    return {
        field.attname: value
        for field in instance._meta.concrete_fields
        if isinstance(value := instance.__dict__.get(field.attname), Unreadable)
    }


@lru_cache
def _timestamptz_loader(timezone: Any) -> type:
    from django.db.backends.postgresql.psycopg_any import BaseTzLoader
    from psycopg import DataError

    class ReadableTzLoader(BaseTzLoader):  # type: ignore[misc]  # psycopg's loaders are untyped here
        """Django's timestamptz loader, giving an Unreadable for a value outside Python's
        range instead of failing the whole result."""

        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except DataError:
                return Unreadable(bytes(data).decode(), DATETIME_RANGE)

    # Django's create_cursor keeps a connection's loader whose timezone is its own.
    ReadableTzLoader.timezone = timezone
    return ReadableTzLoader


def load_unreadable_timestamps(sender: Any, connection: Any, **kwargs: Any) -> None:
    """connection_created receiver (core.apps): on PostgreSQL, timestamps outside Python's
    range load as Unreadable on this connection."""
    if connection.vendor == "postgresql":
        connection.connection.adapters.register_loader(
            "timestamptz", _timestamptz_loader(connection.timezone)
        )
