"""Every raw SQL statement of the jobs app, named and described (as Procrastinate's
sql/queries.sql). Table and column names come from the models' _meta; statuses and other
constants of the code are inlined as literals from jobs.states, so the planner can match the
partial indexes they define. Everything else goes through the ORM.

Who runs what:
- the worker's claim and success (jobs.services.execution): CLAIM_*, OWN_CLAIM, SUCCEED_*;
- set-based deletes (jobs.services._rows.delete_job_rows): DELETE_*, UNLINK_PROVIDER_EVENTS;
- the reports (jobs.reports): FAILING_ERROR_CODES, STATUS_FREQUENCIES;
- a worker's connection (jobs.execution.worker): ASYNC_COMMIT;
- taking a job whose row cannot be read out of the way (jobs.services.quarantine):
  JOB_AS_TEXT, quarantine_statement, QUARANTINE_ATTEMPT;
- the search indexes of PostgreSQL (migration 0010, `manage.py jobs_search_indexes`, the
  jobs.W001 check): SEARCH_INDEXES, ensure_search_indexes, missing_search_indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import DateTimeField

from core.audit import AuditCommand
from core.db import HotStatement
from core.models import AuditEvent
from jobs.models import AttemptOutcome, Job, JobAttempt, ProviderEvent, Task
from jobs.states import NEEDS_OPERATOR, SYSTEM_TRANSITIONS, JobStatus, TaskStatus, sql_list

INTERNAL_ERROR = "internal_error"

_JOB, _ATTEMPT, _TASK, _AUDIT, _EVENT = (
    model._meta.db_table for model in (Job, JobAttempt, Task, AuditEvent, ProviderEvent)
)
_WORKER = SYSTEM_TRANSITIONS[AuditCommand.CLAIM].actor


# --- the worker's hot path ---------------------------------------------------------------------

# Claim and success are the hot path of every job, so each is as few round trips as the
# database allows. Both check and move the state in one UPDATE ... RETURNING (a concurrent
# delivery waits on the row, then finds the job no longer queued); no SELECT, no model save.
# On PostgreSQL the attempt and audit rows are written by the same statement (data-modifying
# CTEs), so a claim, and the success of a job without a task, is a single statement that
# commits on its own: all of it or none of it, like the transaction it replaces. The rows it
# writes are the ones core.audit.audit_fields and JobAttempt describe.
_CLAIM_UPDATE_TEMPLATE = """
UPDATE {job_table}
SET status = '{running}', attempt_count = attempt_count + 1, started_at = %(now)s,
    heartbeat_at = %(now)s, finished_at = NULL, worker = %(worker)s, updated_at = %(now)s
WHERE id = %(job_id)s AND status {status_is} '{queued}'
RETURNING account_id, task_id, action, payload, attempt_count, id
"""

# A claim this worker made at this very time and still holds (see job_claim).
_OWN_CLAIM_TEMPLATE = """
SELECT account_id, task_id, action, payload, attempt_count FROM {job_table}
WHERE id = %(job_id)s AND status = '{running}' AND worker = %(worker)s AND started_at = %(now)s
"""

_AUDIT_INSERT = """INSERT INTO {audit_table}
    (created_at, actor_type, actor, command, account_id, job_id, task_id, from_status, to_status,
     reason, data)"""

# Once one of its jobs runs, a task is `running` whatever its other jobs do (derive_task_status),
# so the claim sets that directly instead of probing the task's jobs.
_CLAIM_TEMPLATE_POSTGRESQL = """
WITH claimed AS ({claim_update}),
attempt AS (
    INSERT INTO {attempt_table}
        (job_id, number, worker, started_at, outcome, error_code, error_detail, traceback)
    SELECT id, attempt_count, %(worker)s::text, %(now)s, '{attempt_running}', '', '', ''
    FROM claimed
),
event AS (
    {audit_insert}
    SELECT %(now)s, '{actor_type}', '{actor}', '{claim}', account_id, id, COALESCE(task_id, ''),
        '{queued}', '{running}', '',
        jsonb_build_object('attempt', attempt_count, 'worker', %(worker)s::text)
    FROM claimed
),
task AS (
    UPDATE {task_table} SET status = '{task_running}', updated_at = %(now)s
    WHERE id = (SELECT task_id FROM claimed) AND status <> '{task_running}'
)
SELECT account_id, task_id, action, payload, attempt_count FROM claimed
"""

_SUCCEED_UPDATE_TEMPLATE = """
UPDATE {job_table}
SET status = '{succeeded}', result = %(result)s, finished_at = %(now)s, heartbeat_at = NULL,
    updated_at = %(now)s
WHERE id = %(job_id)s AND status {status_is} '{running}' AND attempt_count = %(attempt)s
    {only_taskless}
RETURNING account_id, task_id, started_at, id
"""

_SUCCEED_TEMPLATE_POSTGRESQL = """
WITH done AS ({succeed_update}),
attempt AS (
    UPDATE {attempt_table} SET finished_at = %(now)s, outcome = '{attempt_succeeded}',
        duration_ms = GREATEST(
            0, (EXTRACT(EPOCH FROM %(now)s - (SELECT started_at FROM done)) * 1000)::int
        )
    WHERE job_id = %(job_id)s AND number = %(attempt)s AND EXISTS (SELECT FROM done)
),
event AS (
    {audit_insert}
    SELECT %(now)s, '{actor_type}', '{actor}', '{succeed}', account_id, id, COALESCE(task_id, ''),
        '{running}', '{succeeded}', '', jsonb_build_object('attempt', %(attempt)s::int)
    FROM done
)
SELECT account_id, task_id, started_at FROM done
"""

# The code's own constants are written into the statements; only a job's values are sent as
# parameters (each one costs the worker an adaptation on every run).
_SQL_CONSTANTS = {
    "queued": JobStatus.QUEUED.value,
    "running": JobStatus.RUNNING.value,
    "succeeded": JobStatus.SUCCEEDED.value,
    "task_running": TaskStatus.RUNNING.value,
    "attempt_running": AttemptOutcome.RUNNING.value,
    "attempt_succeeded": AttemptOutcome.SUCCEEDED.value,
    "actor_type": _WORKER.type.value,
    "actor": _WORKER.name,
    "claim": AuditCommand.CLAIM.value,
    "succeed": AuditCommand.SUCCEED.value,
    "job_table": _JOB,
    "attempt_table": _ATTEMPT,
    "task_table": _TASK,
    "audit_table": _AUDIT,
}
_SQL_CONSTANTS["audit_insert"] = _AUDIT_INSERT.format(**_SQL_CONSTANTS)


def _statement(template: str, **parts: str) -> str:
    return template.format(**_SQL_CONSTANTS, **parts)


# On PostgreSQL the claim and the success find their job by primary key and test its status
# with IS NOT DISTINCT FROM: for a column that is never NULL the same test as "=", but one the
# planner cannot match to the partial indexes on status (job_status_enqueued,
# job_status_heartbeat). With "=", whenever the statistics say few jobs are queued (a burst
# the last ANALYZE has not seen, or a table analyzed while empty) the planner finds scanning
# the small "queued" index cheaper than the primary key, filters it on id, and every claim
# reads every queued job: throughput collapses as the queue grows. (SQLite's planner prefers
# the unique key by itself, and older SQLite releases lack IS NOT DISTINCT FROM.) For the same
# reason the success closes its attempt by (job_id, number) given as parameters, not by a join
# with the updated job, which the planner could turn into a hash join over every attempt.
_STATUS_IS_POSTGRESQL = "IS NOT DISTINCT FROM"
CLAIM_UPDATE = _statement(_CLAIM_UPDATE_TEMPLATE, status_is="=")
OWN_CLAIM = _statement(_OWN_CLAIM_TEMPLATE)
CLAIM_SQL_POSTGRESQL = _statement(
    _CLAIM_TEMPLATE_POSTGRESQL,
    claim_update=_statement(_CLAIM_UPDATE_TEMPLATE, status_is=_STATUS_IS_POSTGRESQL),
)
SUCCEED_UPDATE = _statement(_SUCCEED_UPDATE_TEMPLATE, status_is="=", only_taskless="")
SUCCEED_SQL_POSTGRESQL = _statement(
    _SUCCEED_TEMPLATE_POSTGRESQL,
    succeed_update=_statement(
        _SUCCEED_UPDATE_TEMPLATE, status_is=_STATUS_IS_POSTGRESQL, only_taskless=""
    ),
)
SUCCEED_TASKLESS_SQL_POSTGRESQL = _statement(
    _SUCCEED_TEMPLATE_POSTGRESQL,
    succeed_update=_statement(
        _SUCCEED_UPDATE_TEMPLATE,
        status_is=_STATUS_IS_POSTGRESQL,
        only_taskless="AND task_id IS NULL",
    ),
)


# Run through libpq, prepared once per connection (core.db.HotStatement).
CLAIM_POSTGRESQL = HotStatement(CLAIM_SQL_POSTGRESQL, types={"now": "timestamptz"})
_SUCCEED_TYPES = {"now": "timestamptz", "attempt": "int4", "result": "jsonb"}
SUCCEED_POSTGRESQL = HotStatement(SUCCEED_SQL_POSTGRESQL, types=_SUCCEED_TYPES)
SUCCEED_TASKLESS_POSTGRESQL = HotStatement(SUCCEED_TASKLESS_SQL_POSTGRESQL, types=_SUCCEED_TYPES)


# --- set-based deletes ------------------------------------------------------------------------
# A batch of job ids goes in as one text parameter: comma-separated on PostgreSQL (ids never
# hold a comma), a JSON list on SQLite. For a batch of 10,000 ids, building, binding and parsing
# 10,000 placeholders three times took far longer than the deletes themselves.
IDS_MATCH = {
    "postgresql": "= ANY(string_to_array(%s, ','))",
    "sqlite": "IN (SELECT value FROM json_each(%s))",
}


def delete_statements(vendor: str) -> tuple[str, str, str]:
    """Attempts of the jobs, then the links of their provider events, then the jobs."""
    matches = IDS_MATCH[vendor]
    return (
        f"DELETE FROM {_ATTEMPT} WHERE job_id {matches}",
        f"UPDATE {_EVENT} SET job_id = NULL WHERE job_id {matches}",
        f"DELETE FROM {_JOB} WHERE id {matches}",
    )


# --- reports ------------------------------------------------------------------------------------

# The distinct error codes of jobs waiting for an operator (PostgreSQL): a loose index scan over
# the partial index job_triage, one index probe per (action, error code) group instead of
# reading every failed row.
_NEEDS_OPERATOR_SQL = sql_list(NEEDS_OPERATOR)
FAILING_ERROR_CODES = f"""
WITH RECURSIVE groups AS (
    (SELECT action, last_error_code FROM {_JOB}
     WHERE status IN ({_NEEDS_OPERATOR_SQL}) ORDER BY action, last_error_code LIMIT 1)
    UNION ALL
    SELECT next.action, next.last_error_code FROM groups
    CROSS JOIN LATERAL (
        SELECT j.action, j.last_error_code FROM {_JOB} j
        WHERE j.status IN ({_NEEDS_OPERATOR_SQL})
          AND (j.action, j.last_error_code) > (groups.action, groups.last_error_code)
        ORDER BY j.action, j.last_error_code LIMIT 1
    ) AS next
)
SELECT DISTINCT last_error_code FROM groups WHERE last_error_code <> '' LIMIT %(limit)s
"""


# The most common statuses with their frequencies, and the table's row estimate, from
# PostgreSQL's statistics (the dashboard's counts of finished jobs on a large table).
STATUS_FREQUENCIES = f"""
SELECT s.most_common_vals::text::text[], s.most_common_freqs, c.reltuples
FROM pg_stats s JOIN pg_class c ON c.oid = '{_JOB}'::regclass
WHERE s.tablename = '{_JOB}' AND s.attname = '{Job._meta.get_field("status").column}'
"""


# --- connections ---------------------------------------------------------------------------------

# A worker's transitions commit without waiting for the WAL flush (JOBS_WORKER_ASYNC_COMMIT).
ASYNC_COMMIT = "SET synchronous_commit TO OFF"


# --- quarantine ----------------------------------------------------------------------------------

# A job row that a step of the system could not read or process (jobs.services.quarantine). Not
# the ORM: loading the row as a model is what may fail. Every column comes back as text, which
# loads whatever the column holds (a timestamp outside Python's range, JSON nested deeper than
# Python can parse); the columns in the order of JOB_COLUMNS.
JOB_COLUMNS = tuple(field.column for field in Job._meta.concrete_fields)
JOB_AS_TEXT = (
    "SELECT "
    + ", ".join(f"CAST({column} AS TEXT)" for column in JOB_COLUMNS)
    + f" FROM {_JOB} WHERE id = %(job_id)s"
)

# The job is failed without reading any of its columns back. Timestamps it cannot be read with
# are overwritten: those this statement sets anyway (QUARANTINE_SETS), and any other one a
# step found unreadable (QUARANTINE_REPAIRS: the time of the quarantine where NULL is not
# allowed, else NULL); the service records the text it replaced. Its JSON, the job's input and
# output, is never overwritten.
QUARANTINE_SETS = {
    "last_error_at": "%(now)s",
    "finished_at": "%(now)s",
    "heartbeat_at": "NULL",
    "enqueued_at": "NULL",
    "updated_at": "%(now)s",
}
QUARANTINE_REPAIRS: dict[str, str] = {
    str(field.column): "NULL" if field.null else "%(now)s"
    for field in Job._meta.concrete_fields
    if isinstance(field, DateTimeField) and field.column not in QUARANTINE_SETS
}
_QUARANTINE_TEMPLATE = f"""
UPDATE {_JOB}
SET status = '{JobStatus.FAILED.value}', last_error_code = '{INTERNAL_ERROR}',
    last_error_detail = %(detail)s,
    {", ".join(f"{column} = {value}" for column, value in QUARANTINE_SETS.items())}{{repairs}}
WHERE id = %(job_id)s AND status = %(status)s{{same_run}}
"""


def quarantine_statement(repairs: tuple[str, ...] = (), *, same_run: bool = False) -> str:
    """The UPDATE failing one job in `status` (and, with `same_run`, attempt %(attempt)s), with
    the columns `repairs` (keys of QUARANTINE_REPAIRS) overwritten."""
    return _QUARANTINE_TEMPLATE.format(
        repairs="".join(f", {column} = {QUARANTINE_REPAIRS[column]}" for column in repairs),
        same_run=" AND attempt_count = %(attempt)s" if same_run else "",
    )


# The job's open attempt, if it has one, is closed as failed with the same detail.
QUARANTINE_ATTEMPT = f"""
UPDATE {_ATTEMPT}
SET outcome = '{AttemptOutcome.FAILED.value}', finished_at = %(now)s,
    error_code = '{INTERNAL_ERROR}', error_detail = %(detail)s
WHERE job_id = %(job_id)s AND outcome = '{AttemptOutcome.RUNNING.value}'
"""


# --- search indexes (PostgreSQL) ------------------------------------------------------------------
# Not in Job.Meta.indexes: GIN and operator classes are PostgreSQL's (SQLite, which the demo and a
# fresh checkout run on, has neither), and the trigram index depends on an extension the
# database user may not be allowed to create. Built CONCURRENTLY: on a large table a plain
# CREATE INDEX would block every write to jobs for minutes.


@dataclass(frozen=True)
class SearchIndex:
    name: str
    # The CREATE INDEX statement after "CREATE INDEX CONCURRENTLY <name> ON <table>".
    definition: str
    needs_trigram: bool = False


_DETAIL = Job._meta.get_field("last_error_detail").column
_PAYLOAD = Job._meta.get_field("payload").column
SEARCH_INDEXES = (
    # The payload filter (jobs.filters.PayloadFilter: `payload @> ...`). jsonb_path_ops indexes
    # only what @> needs: a third of the size of the default operator class, faster to search.
    SearchIndex("job_payload_gin", f"USING gin ({_PAYLOAD} jsonb_path_ops)"),
    # `q` (jobs.filters._filter_text: `UPPER(detail) LIKE UPPER('%text%')`, which is what
    # Django writes for icontains, so the index is on that expression). Partial: most jobs have
    # no error detail, and the filter says `detail <> ''` so the planner may use it.
    SearchIndex(
        "job_error_detail_trgm",
        f"USING gin ((UPPER({_DETAIL})) {{trgm}}.gin_trgm_ops) WHERE {_DETAIL} <> ''",
        needs_trigram=True,
    ),
)

TRIGRAM_EXTENSION = "pg_trgm"
CREATE_TRIGRAM = f"CREATE EXTENSION IF NOT EXISTS {TRIGRAM_EXTENSION}"
# The schema the extension's operator classes are in (the user's search_path need not have it).
TRIGRAM_SCHEMA = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = %s"
# The job table's indexes of these names, and whether each is valid: a CONCURRENTLY build that
# was interrupted leaves an invalid index behind, which is dropped and built again.
SEARCH_INDEX_STATE = f"""
SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = '{_JOB}'::regclass AND c.relname = ANY(%s)
"""

TRIGRAM_HELP = (
    "The trigram index behind text search (q) was not created: the extension pg_trgm is not "
    "installed in this database and this user may not create it ({error}). Text search works "
    "without it, by scanning. To index it, have a superuser (or the database owner, pg_trgm "
    "being a trusted extension) run `CREATE EXTENSION pg_trgm;` in this database, then run "
    "`python manage.py jobs_search_indexes`."
)


def missing_search_indexes(cursor: Any) -> list[str]:
    """The search indexes the job table lacks, or holds invalid (PostgreSQL)."""
    names = [index.name for index in SEARCH_INDEXES]
    cursor.execute(SEARCH_INDEX_STATE, [names])
    valid = {name for name, is_valid in cursor.fetchall() if is_valid}
    return [name for name in names if name not in valid]


def create_trigram_extension(connection: Any) -> tuple[str | None, str | None]:
    """Create pg_trgm if it is not there: (the schema of its operator classes, None), or
    (None, what to do) where this user may not create it. A savepoint inside a transaction, so
    a refusal leaves the caller's transaction usable."""
    from django.db import DatabaseError, transaction

    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(CREATE_TRIGRAM)
            cursor.execute(TRIGRAM_SCHEMA, [TRIGRAM_EXTENSION])
            return cursor.fetchone()[0], None
    except DatabaseError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, TRIGRAM_HELP.format(error=reason)


def ensure_search_indexes(connection: Any) -> list[str]:
    """Build the missing search indexes (PostgreSQL; in autocommit mode, as CONCURRENTLY must
    run outside a transaction). Returns what could not be done and what to do about it, as
    messages for the operator (empty when every index is there)."""
    schema, problem = create_trigram_extension(connection)
    with connection.cursor() as cursor:
        missing = set(missing_search_indexes(cursor))
        for index in SEARCH_INDEXES:
            if index.name not in missing or (index.needs_trigram and schema is None):
                continue
            # regnamespace's text is already an identifier, quoted where it must be.
            definition = index.definition.format(trgm=schema)
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
            cursor.execute(f"CREATE INDEX CONCURRENTLY {index.name} ON {_JOB} {definition}")
    return [problem] if problem else []
