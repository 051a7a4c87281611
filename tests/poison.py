"""Job rows corrupted the way only SQL can (by hand, an old bug, a restore): values the
application never writes itself, in every way each database allows."""

from __future__ import annotations

from django.db import connection

from jobs.models import Job


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def corrupt(job_id: str, **values: str | None) -> None:
    """Set columns of one job row to values as SQL spells them, cast by the database to the
    column's type (None: NULL). Nothing in the application checks them."""
    sets = []
    for column, value in values.items():
        if value is None:
            sets.append(f"{column} = NULL")
        elif is_postgres():
            db_type = Job._meta.get_field(column).db_type(connection)
            sets.append(f"{column} = CAST(%s AS {db_type})")
        else:
            sets.append(f"{column} = %s")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE jobs_job SET {', '.join(sets)} WHERE id = %s",
            [value for value in values.values() if value is not None] + [job_id],
        )
        assert cursor.rowcount == 1


def unreadable_timestamps() -> list[str]:
    """Timestamps the database stores and Python cannot read back. PostgreSQL's timestamptz
    reaches from 4713 BC to 294276 AD and ±infinity; SQLite stores any text, and its driver
    fails on dates that do not exist. Each sorts before today, except those after year 9999."""
    if is_postgres():
        return [
            "0001-01-01 00:00:00+14",  # before year 1 in UTC: the PATCH of issue 13
            "-infinity",
            "infinity",
            "10000-01-01 00:00:00+00",
        ]
    return ["0000-12-31 10:00:00", "2025-13-45 10:00:00"]


def after_year_9999(value: str) -> bool:
    return value in {"infinity", "10000-01-01 00:00:00+00"}


# JSON of the wrong shape, valid JSON for both databases.
WRONG_SHAPE_JSON = ["[]", '"x"', "null", "123"]
# Storable in PostgreSQL's jsonb, deeper than Python's json module can parse (SQLite's
# json_valid, which guards the column, refuses it).
DEEP_JSON = "[" * 5000 + "]" * 5000


def refuse_updates(job_id: str) -> None:
    """Make the database refuse every change of the job but a failure (as a constraint or a
    trigger a restore brought along would), in this test's transaction only."""
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(
                "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.id = '{job_id}' AND NEW.status <> 'failed' THEN "
                "RAISE EXCEPTION 'refused by a constraint' USING ERRCODE = 'check_violation'; "
                "END IF; RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER test_refuse BEFORE UPDATE ON jobs_job "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_refuse BEFORE UPDATE ON jobs_job "
                f"WHEN NEW.id = '{job_id}' AND NEW.status <> 'failed' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a constraint'); END"
            )
