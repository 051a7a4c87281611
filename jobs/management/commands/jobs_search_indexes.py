"""`manage.py jobs_search_indexes`: build the PostgreSQL search indexes that are missing.

Migration 0010 builds them; this builds again what it could not (the trigram index where the
extension pg_trgm could not be created then) or what an interrupted build left invalid. Safe to
run at any time: it builds CONCURRENTLY, and only what is missing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from jobs import sql


class Command(BaseCommand):
    help = "Build the missing PostgreSQL search indexes (payload GIN, error detail trigram)."

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            self.stdout.write("Nothing to do: the search indexes are PostgreSQL's.")
            return
        problems = sql.ensure_search_indexes(connection)
        with connection.cursor() as cursor:
            missing = sql.missing_search_indexes(cursor)
        if problems or missing:
            raise CommandError(" ".join(problems) or f"Still missing: {', '.join(missing)}.")
        names = ", ".join(index.name for index in sql.SEARCH_INDEXES)
        self.stdout.write(f"Search indexes in place: {names}.")
