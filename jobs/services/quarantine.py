"""Taking a job out of the way when a step of the system cannot read or process its row, so
that one row never stops the work of others.

Rows the application did not write itself (SQL by hand, an old bug, a restore) may hold what it
cannot load: a timestamp outside Python's years 1 to 9999, JSON nested too deep, a payload that
is no object, an attempt count no claim can add to. (A status no code knows is taken by no step;
it is only shown, and jobs.states lets an operator delete the job.) The dispatcher, the sweeper
and the requeue try their rows in a batch, then one by one in a savepoint each when the batch
fails; a worker checks the job it claims. A row that fails on its own for a reason in its data
(DATA_ERRORS, or an Unreadable value where the step reads it) is quarantined: `job_quarantine`
fails it with `internal_error` and a detail naming the value it could not read, closes its open
attempt, and records a `quarantine` audit event; the step goes on with the next row and logs
which job and why. An error that is not about the row (the database unreachable, a bug) is not
turned into a failed job: connection errors stop the step, which its caller retries; anything
else skips the row for this round, with its job id logged.

What is overwritten: an unreadable timestamp (run_at, created_at, started_at get the time of
the quarantine, or NULL where NULL is allowed; the others are set by the quarantine anyway), so
that the row loads everywhere afterwards and an operator's retry starts from sane values. The
replaced text is kept in the detail and the audit event. JSON is never overwritten (it is the
job's input or output; an unreadable payload fails the job again on its next claim until an
operator corrects it), nor is any other column.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    models,
    transaction,
)
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.actors import Actor
from core.audit import AuditCommand, audit
from core.db import SQLValue
from core.unreadable import DATETIME_RANGE, unreadable_fields
from jobs import sql
from jobs.models import Job
from jobs.services import _rows
from jobs.states import MAX_ATTEMPT_COUNT, SYSTEM_QUARANTINE, JobStatus

logger = logging.getLogger(__name__)

# The database is unreachable: the step is retried whole, no row is blamed.
CONNECTION_ERRORS = (OperationalError, InterfaceError)
# What a row's data causes when a step reads or writes it: the database refusing a value or a
# constraint, Python refusing to convert one (SQLite's driver parsing a datetime, a JSON
# document too deep, an Unreadable where a datetime is expected).
DATA_ERRORS = (
    DataError,
    IntegrityError,
    ValidationError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
)
_TEXT_SHOWN = 120  # characters of a bad value quoted in the detail and the audit event


class UnreadableRow(ValueError):
    """A job's row holds values a step cannot read (Unreadable values, by field name)."""

    def __init__(self, job_id: str, fields: dict[str, Any]) -> None:
        self.job_id = job_id
        self.fields = fields
        super().__init__(f"job {job_id} holds unreadable values in {', '.join(sorted(fields))}")


class JobQuarantined(Exception):
    """Raised to a worker: the job it was given was quarantined instead of run."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} was quarantined")


def check_readable(job: Job) -> None:
    """UnreadableRow unless every loaded field of `job` could be read."""
    fields = unreadable_fields(job)
    if fields:
        raise UnreadableRow(job.pk, fields)


@dataclass(frozen=True)
class Problem:
    """One value of a row that the application cannot read or use."""

    field: str
    text: str | None
    reason: str
    repair: str = ""  # what the quarantine sets instead, if it overwrites the value

    def describe(self) -> str:
        value = "" if self.text is None else f" {_quoted(self.text)}"
        repair = f" ({self.repair})" if self.repair else ""
        return f"{self.field}{value}: {self.reason}{repair}"


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _TEXT_SHOWN else text[:_TEXT_SHOWN] + "…")


def read_as_text(job_id: str) -> dict[str, str | None] | None:
    """Every column of the job as the database spells it (jobs.sql.JOB_AS_TEXT), by field
    name; None when the job is gone."""
    with connection.cursor() as cursor:
        cursor.execute(sql.JOB_AS_TEXT, {"job_id": job_id})
        row = cursor.fetchone()
    if row is None:
        return None
    names = {field.column: field.attname for field in Job._meta.concrete_fields}
    return {names[column]: value for column, value in zip(sql.JOB_COLUMNS, row, strict=True)}


_JSON_SHAPE = {
    "payload": "an object",
    "labels": "an object",
    "result": "an object or null",
    "resolution": "an object or null",
}
_JSON_KIND = {list: "a JSON array", str: "a JSON string", bool: "a JSON boolean"}


def diagnose(row: dict[str, str | None]) -> list[Problem]:
    """The values of a job row (read_as_text) the application cannot read or use."""
    problems = []
    for field in Job._meta.concrete_fields:
        text = row[field.attname]
        if isinstance(field, models.DateTimeField):
            if text is not None and not _readable_datetime(text):
                problems.append(
                    Problem(field.name, text, DATETIME_RANGE, _repair(str(field.column)))
                )
        elif isinstance(field, models.JSONField) and text is not None:
            problem = _json_problem(field.name, text)
            if problem:
                problems.append(problem)
    status = row["status"]
    if status not in JobStatus.values:
        problems.append(
            Problem("status", status, "not a status the application knows", "set to failed")
        )
    attempts = row["attempt_count"]
    if attempts is not None and int(attempts) >= MAX_ATTEMPT_COUNT:
        problems.append(
            Problem("attempt_count", attempts, "the largest integer: no attempt can be added")
        )
    return problems


def _repair(column: str) -> str:
    repairs: dict[str, str] = {**sql.QUARANTINE_SETS, **sql.QUARANTINE_REPAIRS}
    value = repairs.get(column)
    if value is None:
        return ""
    return "cleared" if value == "NULL" else "set to the time of quarantine"


def _readable_datetime(text: str) -> bool:
    try:
        value = parse_datetime(text)
        return value is not None and value.astimezone(UTC) is not None
    except (ValueError, OverflowError):
        return False


def _json_problem(name: str, text: str) -> Problem | None:
    try:
        value = json.loads(text)
    except RecursionError:
        return Problem(name, text, "JSON nested deeper than Python can read")
    except ValueError as exc:
        return Problem(name, text, f"not JSON ({exc})")
    if isinstance(value, dict) or (value is None and _JSON_SHAPE[name].endswith("null")):
        return None
    kind = _JSON_KIND.get(type(value), "JSON null" if value is None else "a JSON number")
    return Problem(name, text, f"{kind}, not {_JSON_SHAPE[name]}")


def job_quarantine(
    *,
    job_id: str,
    status: str,
    found_by: Actor,
    step: str,
    error: BaseException | None = None,
    attempt: int | None = None,
    context: str = "",
    now: datetime | None = None,
) -> bool:
    """Fail the job `job_id`, if it is still in `status` (and, given `attempt`, still that
    run), because `step` of `found_by` could not read or process it (`error`; `context`: what
    it was doing, for the detail). False when the job is gone or has moved on. One transaction
    (a savepoint inside the caller's)."""
    now = now or timezone.now()
    with transaction.atomic():
        row = read_as_text(job_id)
        if row is None or row["status"] != status:
            return False
        problems = diagnose(row)
        detail = _detail(step, found_by, problems, error, context)
        repairs = tuple(p.field for p in problems if p.field in sql.QUARANTINE_REPAIRS)
        # (field names and column names of these timestamps are the same)
        params: dict[str, SQLValue] = {
            "job_id": job_id,
            "status": status,
            "detail": detail,
            "now": now,
        }
        if attempt is not None:
            params["attempt"] = attempt
        with connection.cursor() as cursor:
            cursor.execute(sql.quarantine_statement(repairs, same_run=attempt is not None), params)
            if cursor.rowcount != 1:
                return False
            cursor.execute(sql.QUARANTINE_ATTEMPT, params)
        audit(
            actor=SYSTEM_QUARANTINE,
            command=AuditCommand.QUARANTINE,
            account_id=row["account_id"],
            job_id=job_id,
            task_id=row["task_id"],
            from_status=status,
            to_status=JobStatus.FAILED,
            reason=detail[:500],
            data={
                "found_by": found_by.name,
                "step": step,
                "fields": {
                    p.field: {
                        "value": None if p.text is None else p.text[:_TEXT_SHOWN],
                        "problem": p.reason,
                        "repair": p.repair,
                    }
                    for p in problems
                },
                "error": _error_text(error)[:500],
            },
            now=now,
        )
        _rows.refresh_task_statuses([row["task_id"]])
    logger.error("quarantined job %s (%s, %s): %s", job_id, found_by.name, step, detail)
    return True


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return ""
    if isinstance(error, UnreadableRow):
        return f"unreadable values in {', '.join(sorted(error.fields))}"
    return f"{type(error).__name__}: {error}".strip()


def _detail(
    step: str,
    found_by: Actor,
    problems: list[Problem],
    error: BaseException | None,
    context: str = "",
) -> str:
    head = (
        f"Quarantined by {found_by.name} ({step}): the job could not be processed, so it was "
        "failed to keep it out of the way of other jobs."
    )
    if context:
        head += f" {context}"
    if problems:
        body = " Its row holds " + "; ".join(p.describe() for p in problems) + "."
    else:
        body = " Its row holds no value the application cannot read."
    error_text = _error_text(error)
    if error_text and not isinstance(error, UnreadableRow):
        body += f" The error: {error_text}"
    return (head + body)[:2000]


def quarantine_on_error(
    job_id: str,
    error: BaseException,
    *,
    status: str,
    found_by: Actor,
    step: str,
    attempt: int | None = None,
) -> bool:
    """What a step does with a row that failed on its own: quarantine it when the failure is in
    its data (DATA_ERRORS); else log it with its job id and leave it for the next round.
    Connection errors are re-raised. Returns whether the job was quarantined."""
    if isinstance(error, CONNECTION_ERRORS):
        raise error
    if not isinstance(error, DATA_ERRORS):
        logger.error(
            "%s could not process job %s and left it for the next round: %s",
            step,
            job_id,
            _error_text(error),
            exc_info=error,
        )
        return False
    try:
        return job_quarantine(
            job_id=job_id,
            status=status,
            found_by=found_by,
            step=step,
            error=error,
            attempt=attempt,
        )
    except CONNECTION_ERRORS:
        raise
    except Exception:
        logger.exception("%s could not quarantine job %s; left for the next round", step, job_id)
        return False
