"""Every raw SQL statement of the accounts app, named and described, with table and column names
taken from the models' _meta (see jobs.sql for the jobs app's)."""

from __future__ import annotations

from accounts.models import ApiKey
from core.db import column

# The API key of a prefix, on every API request: one plain query, the row read with
# Model.from_db (a RawQuerySet or a queryset costs more than the look-up itself). Without the
# account: callers need only its id. `prefix` is unique.
KEY_FIELDS = [field.attname for field in ApiKey._meta.concrete_fields]
KEY_BY_PREFIX = (
    f"SELECT {', '.join(column(ApiKey._meta.get_field(name)) for name in KEY_FIELDS)} "
    f"FROM {ApiKey._meta.db_table} WHERE prefix = %s"
)
