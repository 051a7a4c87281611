"""The database plumbing every app shares, and its generic statements: writes that Django's ORM
makes slower than they need to be (bulk inserts, inserts that skip existing rows, the few
statements a worker runs for every job), and PostgreSQL's table estimate. An app's own
statements live in its sql module (jobs.sql, accounts.sql)."""

from __future__ import annotations

import hashlib
import json
import operator
import re
import weakref
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias
from uuid import UUID

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models.fields.reverse_related import ForeignObjectRel
from psycopg import pq

# A value the database driver adapts as a statement parameter.
SQLValue: TypeAlias = bool | int | float | Decimal | str | bytes | date | datetime | UUID | None


def column(field: models.Field[Any, Any] | ForeignObjectRel) -> str:
    """The column of a concrete field (what `_meta.get_field` returns for one)."""
    if not isinstance(field, models.Field) or field.column is None:
        raise ValueError(f"{field!r} has no column")
    return field.column


def insert_ignoring_conflicts(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[SQLValue]]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike) of rows given as values
    of `fields`, already adapted for the database.

    What bulk_create(ignore_conflicts=True) does, without its per-row model instance and
    per-field preparation, which cost five times the insert itself on a 10,000-message sync.
    """
    if not rows:
        return
    meta = model._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column(meta.get_field(name))) for name in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {row} ON CONFLICT DO NOTHING"
    # executemany: one statement, parsed once; psycopg 3 pipelines the rows in one round trip.
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def table_estimate(model: type[models.Model], using: str = DEFAULT_DB_ALIAS) -> int | None:
    """PostgreSQL's row estimate for the model's table (kept by ANALYZE and autovacuum); None
    elsewhere, or when the table was never analyzed."""
    db = connections[using]
    if db.vendor != "postgresql":
        return None
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    # -1: never analyzed (PostgreSQL 14+); 0 may also mean "not analyzed yet".
    return int(row[0]) if row and row[0] > 0 else None


def insert_rows(objs: Sequence[models.Model]) -> None:
    """Insert new model instances (all of one model) as fast as the database takes them.

    On PostgreSQL the rows stream through one COPY: bulk_create's per-field preparation and
    psycopg's client-side quoting of its UNNEST arrays cost several times the insert itself
    (10,000 jobs: about 1.1 s of Python before the first row reached the server). Values are
    taken as they are, which holds for this project's fields: ids, text, numbers and aware
    datetimes, and JSON, encoded with the field's own encoder. An auto-incremented primary key
    left empty is assigned by the database and not read back. Elsewhere: bulk_create.
    """
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs, batch_size=1000)
        return
    meta = model._meta
    fields = [
        field
        for field in meta.concrete_fields
        if not (field.primary_key and isinstance(field, models.AutoField))
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column(field)) for field in fields)
    json_fields = {
        field.attname: field.encoder for field in fields if isinstance(field, models.JSONField)
    }
    attnames = [field.attname for field in fields]
    get = operator.attrgetter(*attnames)  # one call per row, not one per field
    values_of = get if len(attnames) > 1 else lambda obj: (get(obj),)
    json_at = [(n, json_fields[name]) for n, name in enumerate(attnames) if name in json_fields]

    def row(obj: models.Model) -> list[Any]:
        values = list(values_of(obj))
        for n, encoder in json_at:
            if values[n] is not None:
                values[n] = json.dumps(values[n], cls=encoder)
        return values

    sql = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
    # wrap_database_errors: errors arrive as django.db errors, as from any other query.
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(sql) as copy,
    ):
        for obj in objs:
            copy.write_row(row(obj))
    for obj in objs:
        # Saved, as bulk_create leaves them: a later save() updates instead of inserting.
        obj._state.adding = False
        obj._state.db = connection.alias


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def insert_plain_rows(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[str | int]]
) -> None:
    """Insert rows of plain values (text and integers, no NULL) of `fields`, many of them: on
    PostgreSQL one COPY of a text block built at once, which for 100,000 narrow rows (audit
    links) is several times faster than insert_rows' model instances and row-by-row writes;
    elsewhere one INSERT run for each row (executemany)."""
    if not rows:
        return
    meta = model._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column(meta.get_field(name))) for name in fields)
    if connection.vendor != "postgresql":
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {row}", rows)
        return
    text = "".join(
        "\t".join(str(value).translate(_COPY_ESCAPES) for value in values) + "\n" for values in rows
    )
    sql = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(sql) as copy,
    ):
        copy.write(text)


class HotStatement:
    """One statement of the worker's hot path (PostgreSQL), run through libpq directly.

    psycopg's cursor spends about 0.07 ms of Python on every execution (adapting parameters,
    converting the query, building the result), three times what libpq itself takes, and a
    worker runs two such statements per job. Here the statement is prepared once per
    connection (planning it costs more than running it), parameters go as text with the
    types given, and the first row comes back as text. Without prepared statements
    (JOBS_DB_PREPARED_STATEMENTS=0, behind a pooler in transaction mode) it is sent with its
    parameters each time.

    Only in autocommit: the statement commits on its own. Inside a transaction Django opened,
    psycopg may not have sent its BEGIN yet, so the statement goes through a psycopg cursor,
    which does (and its values come back typed: callers convert either). Errors arrive as
    django.db errors, as from any other query. libpq waits for the server in C, so a signal
    (django-q2's timeout, Ctrl-C) is handled only once the statement returns: these are
    single-row statements by primary key, and the worker runs its handler only between them.
    """

    _PLACEHOLDER = re.compile(r"%\((\w+)\)s")

    def __init__(self, sql: str, types: Mapping[str, str] | None = None) -> None:
        self.sql = sql
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        self._libpq_sql = self._PLACEHOLDER.sub(number, sql).encode()
        self._names = names
        # Parameters without a type are typed by the server from where they are used.
        oids = {
            name: psycopg.postgres.types[type_name].oid for name, type_name in (types or {}).items()
        }
        self._types = [oids.get(name, 0) for name in names]
        self._name = b"jobs_" + hashlib.sha256(self._libpq_sql).hexdigest()[:16].encode()
        self._prepared_on: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()

    def first_row(self, params: Mapping[str, object]) -> tuple[Any, ...] | None:
        """The statement's first row, or None. Through libpq every value is text (or None)."""
        db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: `connection` is a lookup per use
        db.ensure_connection()
        with db.wrap_database_errors:
            if not db.get_autocommit():
                with psycopg.Cursor(db.connection) as cursor:
                    cursor.execute(self.sql, params, prepare=True)
                    return cursor.fetchone()
            result = self._execute(db.connection, [_as_text(params[name]) for name in self._names])
            if result.ntuples == 0:
                return None
            return tuple(
                None if value is None else value.decode()
                for value in (result.get_value(0, column) for column in range(result.nfields))
            )

    def _execute(self, conn: psycopg.Connection, values: list[bytes | None]) -> pq.abc.PGresult:
        pgconn = conn.pgconn
        if conn.prepare_threshold is None:
            return _checked(pgconn, pgconn.exec_params(self._libpq_sql, values, self._types))
        if conn not in self._prepared_on:
            _checked(pgconn, pgconn.prepare(self._name, self._libpq_sql, self._types))
            self._prepared_on.add(conn)
        # psycopg's annotation leaves out None, which libpq sends as NULL (as exec_params says).
        result = pgconn.exec_prepared(self._name, values)  # type: ignore[arg-type]
        state = result.error_field(pq.DiagnosticField.SQLSTATE)
        if state in _PREPARE_AGAIN:
            # The session's prepared statements were dropped (DEALLOCATE ALL, DISCARD ALL), or
            # a migration changed a table under this one ("cached plan must not change result
            # type"): prepare it again, once.
            if state == b"0A000":
                _checked(pgconn, pgconn.exec_params(b"DEALLOCATE " + self._name, []))
            _checked(pgconn, pgconn.prepare(self._name, self._libpq_sql, self._types))
            result = pgconn.exec_prepared(self._name, values)  # type: ignore[arg-type]
        return _checked(pgconn, result)


_PREPARE_AGAIN = {b"26000", b"0A000"}


def _as_text(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime sent to the database")
        return value.isoformat().encode()
    text = str(value).encode()
    if b"\x00" in text:
        # libpq would cut the value there without a word; psycopg refuses it too.
        raise ValueError("NUL character in a value sent to the database")
    return text


def _checked(pgconn: pq.abc.PGconn, result: pq.abc.PGresult) -> pq.abc.PGresult:
    if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        return result
    if pgconn.status != pq.ConnStatus.OK:
        # A lost connection: an OperationalError, which the worker retries.
        message = pgconn.error_message.decode(errors="replace").strip()
        raise psycopg.OperationalError(message or "the connection to the database was lost")
    raise psycopg.errors.error_from_result(result)  # Django's sessions speak UTF-8
