"""Every raw SQL statement of the jobs app, named and described (as Procrastinate's
sql/queries.sql). Table and column names come from the models' _meta; statuses and other
constants of the code are inlined as literals from jobs.states, so the planner can match the
partial indexes they define. Everything else goes through the ORM.

Who runs what:
- the worker's claim and success (jobs.services.execution): CLAIM_*, OWN_CLAIM, SUCCEED_*;
- a task's counters and status, moved by one job's transition (jobs.services._rows):
  task_job_moved (and task_counters_moved inside the claim and the success);
- per-account concurrency limits (jobs.services.limits, and the claim of a limited job):
  LIMIT_LOCK, CLAIM_FAILED_PROBE, CLAIM_LIMITED_*;
- set-based deletes (jobs.services._rows.delete_job_rows): DELETE_*, UNLINK_PROVIDER_EVENTS;
- the reports (jobs.reports, jobs.monitoring.triage): FAILING_ERROR_CODES, STATUS_FREQUENCIES,
  TRIAGE_COUNT_INSERT;
- a worker's connection (jobs.execution.worker): ASYNC_COMMIT;
- taking a job whose row cannot be read out of the way (jobs.services.quarantine):
  JOB_AS_TEXT, quarantine_statement, QUARANTINE_ATTEMPT;
- fixing the set of a bulk operation (jobs.services.bulk): bulk_snapshot_statement;
- observability (jobs.monitoring): DB_NOW;
- the search indexes of PostgreSQL (migration 0010, `manage.py jobs_search_indexes`, the
  jobs.W001 check): SEARCH_INDEXES, ensure_search_indexes, missing_search_indexes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import DateTimeField

from core.audit import AuditCommand
from core.db import HotStatement
from core.models import AuditEvent
from jobs.models import (
    AttemptOutcome,
    BulkOperationChunk,
    ConcurrencyLimit,
    Job,
    JobAttempt,
    ProviderEvent,
    Task,
    TriageCount,
)
from jobs.states import (
    NEEDS_OPERATOR,
    SYSTEM_TRANSITIONS,
    TASK_COUNTER,
    TASK_DONE_BAD,
    TASK_DONE_OK,
    TASK_RUNNING,
    TASK_WAITING,
    JobStatus,
    TaskStatus,
    sql_list,
)

INTERNAL_ERROR = "internal_error"

_JOB, _ATTEMPT, _TASK, _AUDIT, _EVENT, _LIMIT = (
    model._meta.db_table
    for model in (Job, JobAttempt, Task, AuditEvent, ProviderEvent, ConcurrencyLimit)
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
    {limited_set}
WHERE id = %(job_id)s AND status {status_is} '{queued}' {unlimited}
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

# The job's task, if it has one, moves its counters (queued - 1, running + 1) and derives its
# status from them in the same statement (task_counters_moved).
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
    UPDATE {task_table} SET {task_claimed} WHERE id = (SELECT task_id FROM claimed)
)
SELECT account_id, task_id, action, payload, attempt_count FROM claimed
"""

_SUCCEED_UPDATE_TEMPLATE = """
UPDATE {job_table}
SET status = '{succeeded}', result = %(result)s, finished_at = %(now)s, heartbeat_at = NULL,
    updated_at = %(now)s
WHERE id = %(job_id)s AND status {status_is} '{running}' AND attempt_count = %(attempt)s
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
),
task AS (
    UPDATE {task_table} SET {task_succeeded} WHERE id = (SELECT task_id FROM done)
)
SELECT account_id, task_id, started_at FROM done
"""

# --- a task's counters ---------------------------------------------------------------------------

# A task counts its jobs in each status (jobs.states.TASK_COUNTER) and derives its status from
# those counts. A job's transition moves two counters and re-derives the status in one UPDATE
# of the task's row: no scan of the task's jobs, whatever their number. Concurrent transitions
# of two jobs of one task queue on that row for the rest of their statement (PostgreSQL
# evaluates the SET again on the row the other one committed), so the last one to commit
# derives from every count: two jobs finishing at once leave the task `succeeded`.


def task_status_case(count: Callable[[JobStatus], str]) -> str:
    """jobs.states.derive_task_status as an SQL expression, `count(status)` being the SQL of
    the number of the task's jobs in that status (tests/jobs/test_task_status.py checks that
    the two agree)."""

    def group(statuses: frozenset[JobStatus]) -> str:
        return "(" + " + ".join(count(status) for status in sorted(statuses)) + ")"

    waiting, running = group(TASK_WAITING), group(TASK_RUNNING)
    done_ok, done_bad = group(TASK_DONE_OK), group(TASK_DONE_BAD)
    total = f"({waiting} + {running} + {done_ok} + {done_bad})"
    return (
        f"CASE WHEN {total} = 0 THEN '{TaskStatus.EMPTY.value}'"
        f" WHEN {waiting} = {total} THEN '{TaskStatus.PENDING.value}'"
        f" WHEN {waiting} + {running} > 0 THEN '{TaskStatus.RUNNING.value}'"
        f" WHEN {done_bad} > 0 THEN '{TaskStatus.FAILED.value}'"
        f" ELSE '{TaskStatus.SUCCEEDED.value}' END"
    )


def task_counters_moved(source: JobStatus | None, target: JobStatus | None) -> str:
    """The SET clause of an UPDATE of a task for one of its jobs moving from `source` to
    `target` (None: the job was inserted, or deleted): both counters, the derived status, and
    `updated_at` (%(now)s) when the status changes."""
    moves = {source: -1, target: 1} if source != target else {}

    def count(status: JobStatus) -> str:
        column, delta = TASK_COUNTER[status], moves.get(status, 0)
        return f"({column} {'+' if delta > 0 else '-'} 1)" if delta else column

    status = task_status_case(count)
    sets = [f"{TASK_COUNTER[s]} = {count(s)}" for s in JobStatus if moves.get(s)]
    sets += [
        f"status = {status}",
        f"updated_at = CASE WHEN status = {status} THEN updated_at ELSE %(now)s END",
    ]
    return ", ".join(sets)


@functools.cache
def task_job_moved(source: JobStatus | None, target: JobStatus | None) -> str:
    """The UPDATE of task %(task_id)s for one of its jobs moving from `source` to `target`
    (jobs.services._rows.task_job_moved)."""
    return f"UPDATE {_TASK} SET {task_counters_moved(source, target)} WHERE id = %(task_id)s"


# The hot claim takes only a job that no concurrency limit applies to (jobs.services.limits):
# its action is not one whose policy sets a per-account limit (%(limited)s: their names,
# comma-separated on PostgreSQL, a JSON list on SQLite; the registry is complete only once the
# apps are loaded, after this module) and its account set no limit of its own for it (a probe
# of the unique index of a table that is nearly always empty). Any other queued job is claimed
# by CLAIM_LIMITED_*, in a transaction that counts the account's runs of the action first.
_UNLIMITED = {
    "postgresql": """AND action <> ALL(string_to_array(%(limited)s, ','))
    AND NOT EXISTS (
        SELECT FROM {limit_table} l
        WHERE l.account_id = {job_table}.account_id AND l.action = {job_table}.action
    )""",
    "sqlite": """AND action NOT IN (SELECT value FROM json_each(%(limited)s))
    AND NOT EXISTS (
        SELECT 1 FROM {limit_table} l
        WHERE l.account_id = {job_table}.account_id AND l.action = {job_table}.action
    )""",
}
# The claim of a job a limit applies to, once its slot is counted: the same claim, which also
# uses up a forced trigger's leave to go over the limit.
_LIMITED_SET = ", ignore_limit = FALSE"

# The code's own constants are written into the statements; only a job's values are sent as
# parameters (each one costs the worker an adaptation on every run).
_SQL_CONSTANTS = {
    "queued": JobStatus.QUEUED.value,
    "running": JobStatus.RUNNING.value,
    "succeeded": JobStatus.SUCCEEDED.value,
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
    "limit_table": _LIMIT,
}
_SQL_CONSTANTS["audit_insert"] = _AUDIT_INSERT.format(**_SQL_CONSTANTS)
_SQL_CONSTANTS["task_claimed"] = task_counters_moved(JobStatus.QUEUED, JobStatus.RUNNING)
_SQL_CONSTANTS["task_succeeded"] = task_counters_moved(JobStatus.RUNNING, JobStatus.SUCCEEDED)


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
CLAIM_UPDATE = _statement(
    _CLAIM_UPDATE_TEMPLATE,
    status_is="=",
    limited_set="",
    unlimited=_statement(_UNLIMITED["sqlite"]),
)
OWN_CLAIM = _statement(_OWN_CLAIM_TEMPLATE)
CLAIM_SQL_POSTGRESQL = _statement(
    _CLAIM_TEMPLATE_POSTGRESQL,
    claim_update=_statement(
        _CLAIM_UPDATE_TEMPLATE,
        status_is=_STATUS_IS_POSTGRESQL,
        limited_set="",
        unlimited=_statement(_UNLIMITED["postgresql"]),
    ),
)
# The claim of a job whose limit was checked (jobs.services.limits.claim_limited), inside its
# transaction: no limit clause.
CLAIM_LIMITED_UPDATE = _statement(
    _CLAIM_UPDATE_TEMPLATE, status_is="=", limited_set=_LIMITED_SET, unlimited=""
)
CLAIM_LIMITED_SQL_POSTGRESQL = _statement(
    _CLAIM_TEMPLATE_POSTGRESQL,
    claim_update=_statement(
        _CLAIM_UPDATE_TEMPLATE,
        status_is=_STATUS_IS_POSTGRESQL,
        limited_set=_LIMITED_SET,
        unlimited="",
    ),
)
SUCCEED_UPDATE = _statement(_SUCCEED_UPDATE_TEMPLATE, status_is="=")
SUCCEED_SQL_POSTGRESQL = _statement(
    _SUCCEED_TEMPLATE_POSTGRESQL,
    succeed_update=_statement(_SUCCEED_UPDATE_TEMPLATE, status_is=_STATUS_IS_POSTGRESQL),
)


# Run through libpq, prepared once per connection (core.db.HotStatement).
CLAIM_POSTGRESQL = HotStatement(CLAIM_SQL_POSTGRESQL, types={"now": "timestamptz"})
_SUCCEED_TYPES = {"now": "timestamptz", "attempt": "int4", "result": "jsonb"}
SUCCEED_POSTGRESQL = HotStatement(SUCCEED_SQL_POSTGRESQL, types=_SUCCEED_TYPES)


# --- per-account concurrency limits ------------------------------------------------------------

# What a claim that took nothing finds: whether the job is this worker's own claim (a retry
# after a lost reply, see job_claim), or still queued because a limit may apply to it.
CLAIM_FAILED_PROBE = f"""
SELECT status, worker, started_at, account_id, action FROM {_JOB} WHERE id = %(job_id)s
"""

# Serializes every decision about the slots of one account and action (a claim counting the
# runs, a release counting the free slots) across processes and hosts, until the transaction
# ends: a transaction-scoped advisory lock on a hash of the pair (PostgreSQL; on SQLite every
# write transaction is already serialized by BEGIN IMMEDIATE). A lock, not a row: there is no
# row per pair to lock, and a row would be updated by every claim of a limited job.
LIMIT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"


# --- the fair ORM broker (jobs.execution.broker.OrderedORM) -----------------------------------


# django-q2's queue table. Each account has its own line in it (key "<queue>:<account>"); the
# queue's own key is the lane ahead of the lines (trigger; and messages of no known account).
# One round trip finds what the broker takes next: the head of the lane, else the heads of
# the lines from the first account after the one this broker served last (%(cursor)s) on, else,
# wrapping around, from the first account on: up to %(batch)s messages each, in line order.
# Each part is one range scan of the index jobs_ormq_line (key, lock, id), whatever the lengths
# of the lines: a flood in one account's line costs the others nothing. Every account key sorts
# after the lane's key (it extends it), in any collation. Not the ORM: three limited subqueries
# in one statement.
def _ormq_table() -> str:
    from django_q.models import OrmQ

    return str(OrmQ._meta.db_table)


_ORMQ = _ormq_table()
_ORMQ_LANE = f"""
SELECT id, key, lock, payload FROM {_ORMQ}
WHERE key = %(lane)s AND lock < %(now)s ORDER BY lock, id LIMIT %(batch)s
"""
_ORMQ_NEXT = f"""
SELECT id, key, lock, payload FROM {_ORMQ}
WHERE key {{where}} AND key LIKE %(prefix)s ESCAPE '\\' AND lock < %(now)s
ORDER BY key, lock, id LIMIT %(batch)s
"""
ORMQ_FAIR_DEQUEUE = f"""
SELECT 0 AS part, id, key, lock, payload FROM ({_ORMQ_LANE}) AS lane
UNION ALL
SELECT 1, id, key, lock, payload FROM ({_ORMQ_NEXT.format(where="> %(cursor)s")}) AS next_line
UNION ALL
SELECT 2, id, key, lock, payload FROM (
    {_ORMQ_NEXT.format(where="> %(lane)s AND key <= %(cursor)s")}
) AS first_line
"""

# PostgreSQL: the same read and the take in one statement. Each part locks the rows it reads
# and skips rows another pusher is taking at that moment (SKIP LOCKED), so the pushers of two
# clusters reading one line take its next messages instead of colliding on its head (with a
# compare-and-set after the read, the loser of each collision read again). Same choice as the
# read above and OrderedORM.dequeue make of its rows: the lane's, or else the lines' in turn.
_LOCKED = "LIMIT %(batch)s FOR UPDATE SKIP LOCKED"
_ORMQ_LANE_LOCKED = _ORMQ_LANE.replace("LIMIT %(batch)s", _LOCKED)
_ORMQ_NEXT_LOCKED = _ORMQ_NEXT.replace("LIMIT %(batch)s", _LOCKED)
ORMQ_FAIR_TAKE_POSTGRESQL = f"""
WITH found AS (
    SELECT 0 AS part, id, key, lock FROM ({_ORMQ_LANE_LOCKED}) AS lane
    UNION ALL
    SELECT 1, id, key, lock FROM ({_ORMQ_NEXT_LOCKED.format(where="> %(cursor)s")}) AS next_line
    UNION ALL
    SELECT 2, id, key, lock FROM (
        {_ORMQ_NEXT_LOCKED.format(where="> %(lane)s AND key <= %(cursor)s")}
    ) AS first_line
), chosen AS (
    SELECT part, id, key, lock FROM found
    WHERE part = 0 OR NOT EXISTS (SELECT FROM found WHERE part = 0)
    ORDER BY part, key, lock, id LIMIT %(batch)s
)
UPDATE {_ORMQ} AS message SET lock = %(until)s FROM chosen WHERE message.id = chosen.id
RETURNING chosen.part, message.id, chosen.key, chosen.lock, message.payload
"""


def ormq_take(count: int) -> str:
    """Take the `count` messages found above (%(id0)s, ...) that nobody took since: a
    compare-and-set on their lock (a message another cluster took is held until a time to come,
    so it no longer matches), as django-q2's own ORM broker does it, one statement for all."""
    ids = ", ".join(f"%(id{n})s" for n in range(count))
    return (
        f"UPDATE {_ORMQ} SET lock = %(until)s WHERE id IN ({ids}) AND lock < %(now)s RETURNING id"
    )


# --- set-based deletes ------------------------------------------------------------------------
# A batch of job ids goes in as one text parameter: comma-separated on PostgreSQL (ids never
# hold a comma), a JSON list on SQLite. For a batch of 10,000 ids, building, binding and parsing
# 10,000 placeholders three times took far longer than the deletes themselves.
IDS_MATCH = {
    "postgresql": "= ANY(string_to_array(%s, ','))",
    "sqlite": "IN (SELECT value FROM json_each(%s))",
}


# The same batch as a subquery of ids, for the ORM's `pk__in` (jobs.services.bulk): one
# parameter however many ids, where `pk__in=[...]` binds one placeholder per id.
IDS_SUBQUERY = {
    "postgresql": "SELECT UNNEST(STRING_TO_ARRAY(%s, ','))",
    "sqlite": "SELECT value FROM json_each(%s)",
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


# The triage's counts, per account, action and error code, of every failed and stalled job
# (jobs.monitoring.triage): one pass over the partial index job_triage, in its order, written
# into the counts table (emptied first, in the same transaction).
TRIAGE_COUNT_INSERT = f"""
INSERT INTO {TriageCount._meta.db_table}
    (account_id, action, error_code, failed, stalled, first_seen, last_seen)
SELECT account_id, action, last_error_code,
       SUM(CASE WHEN status = '{JobStatus.FAILED}' THEN 1 ELSE 0 END),
       SUM(CASE WHEN status = '{JobStatus.STALLED}' THEN 1 ELSE 0 END),
       MIN(last_error_at), MAX(last_error_at)
FROM {_JOB} WHERE status IN ({_NEEDS_OPERATOR_SQL})
GROUP BY action, last_error_code, account_id
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


# --- bulk operations (jobs.services.bulk) ---------------------------------------------------------

# Fixing an operation's set when it is created: the ids the filter matches, numbered in id order
# and cut into chunks of %(size)s, each chunk one row of comma-separated ids. One statement
# inside the database, whatever the count (100,000 ids: a few hundred rows written, against
# 100,000 rows and index entries for a table of single ids); nothing crosses to Python. The
# filter's own SELECT (the ORM's, from jobs.filters, selecting the id as `bulk_id`) goes in as
# {matched}, its parameters after the operation's id. Not the ORM: an INSERT ... SELECT with a
# window and an aggregate.
_BULK_CHUNK = BulkOperationChunk._meta.db_table
_SNAPSHOT_TEMPLATE = """
INSERT INTO {chunk_table} (operation_id, number, size, job_ids)
SELECT %s, (n - 1) / {size}, COUNT(*), {aggregate}
FROM (
    SELECT m.bulk_id AS id, ROW_NUMBER() OVER (ORDER BY m.bulk_id) AS n FROM ({matched}) m
) numbered
GROUP BY (n - 1) / {size}
"""
_SNAPSHOT_AGGREGATE = {
    "postgresql": "STRING_AGG(id, ',' ORDER BY id)",
    # SQLite's group_concat keeps no order: the batch sorts its ids itself.
    "sqlite": "GROUP_CONCAT(id, ',')",
}


def bulk_snapshot_statement(vendor: str, matched: str, size: int) -> str:
    """The INSERT of an operation's chunks; parameters: the operation's id, then those of
    `matched` (the filter's SELECT of job ids)."""
    return _SNAPSHOT_TEMPLATE.format(
        chunk_table=_BULK_CHUNK,
        size=int(size),
        aggregate=_SNAPSHOT_AGGREGATE[vendor],
        matched=matched,
    )


# --- observability -----------------------------------------------------------------------------

# The database's clock, which process heartbeats carry (Now()), for judging them on any host:
# (SQLite, PostgreSQL). SQLite's CURRENT_TIMESTAMP has no fraction of a second, Django's Now()
# on SQLite is this STRFTIME.
DB_NOW = ("SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')", "SELECT CURRENT_TIMESTAMP")
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
