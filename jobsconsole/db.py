"""Bulk writes that Django's ORM makes slower than they need to be."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection, models


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
    columns = ", ".join(quote(field.column) for field in fields)
    json_fields = {
        field.attname: field.encoder for field in fields if isinstance(field, models.JSONField)
    }
    attnames = [field.attname for field in fields]

    def row(obj: models.Model) -> list:
        values = []
        for attname in attnames:
            value = getattr(obj, attname)
            if attname in json_fields and value is not None:
                value = json.dumps(value, cls=json_fields[attname])
            values.append(value)
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
