"""System checks of the jobs app (run by `manage.py check --database default` and `migrate`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

from jobs import sql

SEARCH_INDEX_MIGRATION = ("jobs", "0010_search_indexes")


@register(Tags.database)
def search_indexes(
    app_configs: Any, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """jobs.W001: a PostgreSQL database migrated past 0010 lacks a search index (the trigram
    index where pg_trgm could not be created, or a build that was interrupted)."""
    messages: list[CheckMessage] = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        try:
            applied = MigrationRecorder(connection).applied_migrations()
            if SEARCH_INDEX_MIGRATION not in applied:
                continue  # migrate builds them
            with connection.cursor() as cursor:
                missing = sql.missing_search_indexes(cursor)
        except DatabaseError:
            continue  # not migrated yet, or unreachable: other checks say so
        if missing:
            messages.append(
                CheckWarning(
                    f"Search index(es) missing on database {alias!r}: {', '.join(missing)}; "
                    "the filters they serve scan the job table.",
                    hint="Run `python manage.py jobs_search_indexes` (it says what it needs, "
                    "such as a superuser creating the pg_trgm extension).",
                    id="jobs.W001",
                )
            )
    return messages
