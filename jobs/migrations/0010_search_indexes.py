"""The search indexes of PostgreSQL: a GIN index on the payload (the payload filter) and a
trigram GIN index on the error detail (`q`), with the pg_trgm extension it needs
(jobs.sql.SEARCH_INDEXES). Built CONCURRENTLY, so the migration is not atomic and writes to jobs
go on while it runs on a large table.

Where this database user may not create pg_trgm, the migration still succeeds: it builds the
payload index, prints what to do (a superuser runs `CREATE EXTENSION pg_trgm;`, then
`manage.py jobs_search_indexes`), and the check jobs.W001 repeats it on every `migrate` until it
is done; text search works meanwhile, by scanning. SQLite has neither index: its filters scan."""

import sys

from django.db import migrations

from jobs import sql

INDEX_NAMES = [index.name for index in sql.SEARCH_INDEXES]


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    for problem in sql.ensure_search_indexes(connection):
        sys.stderr.write(f"\n  WARNING (jobs 0010_search_indexes): {problem}\n")


def drop(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for name in INDEX_NAMES:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("jobs", "0009_schedules")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
