"""The raw-SQL baseline of a view: the statements it ran, executed again on their own."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext


def captured_selects(call: Callable[[], object]) -> list[str]:
    """The SELECTs `call` runs (session, user and API key look-ups included), as executable SQL.
    Writes a read makes now and then (a key's last-used time, a session) are left out."""
    with CaptureQueriesContext(connection) as queries:
        call()
    return [
        q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")
    ]


def replay(statements: list[str]) -> Callable[[], None]:
    """Run `statements` one after the other through the same connection, fetching every row."""

    def run() -> None:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
                cursor.fetchall()

    return run
