"""Every rule that changes a job lives here.

Each command is one transaction: it locks the job row, checks the state table (jobs.states),
writes with update_fields, records its audit event and refreshes the task's derived status, all
before commit. Rows are locked in a fixed order (jobs by id, then their tasks by id) so two
commands never deadlock. Broker messages are sent after commit (jobs.broker).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, router, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Account
from core.actors import Actor
from core.audit import audit, audit_fields
from core.db import HotStatement, insert_rows
from core.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from core.ids import new_id
from core.models import AuditEvent
from jobs.actions.registry import JobSpec, get_action, get_event_route, get_task_kind, policy_for
from jobs.broker import enqueue_again_on_commit, enqueue_on_commit
from jobs.filters import filter_jobs, has_filters, normalize_filter_params
from jobs.models import AttemptOutcome, Job, JobAttempt, ProviderEvent, Task
from jobs.states import (
    MUTABLE_FIELDS,
    Command,
    JobStatus,
    TaskStatus,
    derive_task_status,
    is_allowed,
)

logger = logging.getLogger(__name__)
S = JobStatus

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_LABELS = 20
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,49}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_-]{1,50}$")


# --- helpers -----------------------------------------------------------------------------------


def _lock_job(job_id: str, *, for_delete: bool = False) -> Job:
    # NO KEY UPDATE does not block inserts that reference the job (attempts); a delete needs
    # the full lock.
    queryset = Job.objects.select_for_update(no_key=not for_delete)
    try:
        return queryset.get(pk=job_id)
    except Job.DoesNotExist:
        raise NotFound(f"Job {job_id} not found.") from None


def _check_allowed(job: Job, command: Command) -> None:
    if not is_allowed(command, job.status):
        raise InvalidTransition(job_id=job.pk, command=command.value, status=job.status)


def _refresh_task_statuses(task_ids: Iterable[str | None]) -> None:
    """Recompute the derived status of each task from its jobs, under the task's row lock so
    concurrent transitions of two jobs of one task serialize and the last one sees both.

    The status depends only on which job statuses are present, so each task costs one index
    probe per status (`job_task_status`), however many jobs it has."""
    ids = sorted({task_id for task_id in task_ids if task_id})
    if not ids:
        return
    current = dict(
        Task.objects.select_for_update(no_key=True)
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "status")
    )
    # A new statement after the lock: in READ COMMITTED it sees what the previous holder of
    # the lock committed.
    probes = {
        status.value: Exists(Job.objects.filter(task_id=OuterRef("pk"), status=status))
        for status in S
    }
    rows = Task.objects.filter(pk__in=list(current)).annotate(**probes).values("pk", *probes)
    now = timezone.now()
    for row in rows:
        status = derive_task_status({name: 1 for name in probes if row[name]})
        if status != current[row["pk"]]:
            Task.objects.filter(pk=row["pk"]).update(status=status, updated_at=now)


def _grant_attempt_if_spent(job: Job, fields: list[str]) -> None:
    # Retry and trigger run the job once more even when its budget is spent.
    if job.attempt_count >= job.max_attempts:
        job.max_attempts = job.attempt_count + 1
        fields.append("max_attempts")


def _requeue(job: Job, *, now: datetime) -> list[str]:
    job.status = S.QUEUED
    job.run_at = now
    job.enqueued_at = now
    job.finished_at = None
    job.heartbeat_at = None
    job.worker = ""
    job.resolution = None
    return [
        "status",
        "run_at",
        "enqueued_at",
        "finished_at",
        "heartbeat_at",
        "worker",
        "resolution",
    ]


def _save(job: Job, fields: list[str], *, now: datetime) -> None:
    job.updated_at = now
    job.save(update_fields=sorted({*fields, "updated_at"}))


# --- creating jobs -----------------------------------------------------------------------------


def _validate_spec(spec: JobSpec) -> None:
    if get_action(spec.action) is None:
        raise ValidationFailed.for_field("action", f"Unknown action {spec.action!r}.")
    _validate_payload(spec.payload)
    _validate_labels(spec.labels)


def jobs_create(
    *,
    account: Account,
    specs: list[JobSpec],
    actor: Actor,
    task: Task | None = None,
    provider_event: ProviderEvent | None = None,
) -> list[Job]:
    """Create jobs in one batched insert. Due jobs of an active account are queued and sent to
    the broker after commit; the others wait as `scheduled` for the dispatcher."""
    for spec in specs:
        _validate_spec(spec)
    now = timezone.now()
    jobs: list[Job] = []
    for spec in specs:
        run_at = spec.run_at or now
        due = run_at <= now and not account.is_paused
        jobs.append(
            Job(
                id=new_id("job"),
                account_id=account.pk,
                task_id=task.pk if task else None,
                provider_event_id=provider_event.pk if provider_event else None,
                action=spec.action,
                payload=spec.payload,
                labels=spec.labels,
                priority=spec.priority,
                run_at=run_at,
                max_attempts=spec.max_attempts or policy_for(spec.action).effective_max_attempts,
                status=S.QUEUED if due else S.SCHEDULED,
                enqueued_at=now if due else None,
                created_at=now,
                updated_at=now,
            )
        )
    with transaction.atomic():
        insert_rows(jobs)
        if task is None:
            # A task's jobs are recorded by the task's own `create_task` event (which the job
            # page shows): ten thousand identical "created" rows would say nothing more.
            insert_rows(
                [
                    AuditEvent(
                        **audit_fields(
                            actor=actor,
                            command="create",
                            account_id=account.pk,
                            job=job,
                            to_status=job.status,
                            data={"action": job.action}
                            | (
                                {"provider_event_id": job.provider_event_id}
                                if provider_event
                                else {}
                            ),
                            now=now,
                        )
                    )
                    for job in jobs
                ]
            )
        else:
            _refresh_task_statuses([task.pk])
        enqueue_on_commit([job.pk for job in jobs if job.status == S.QUEUED])
    return jobs


def job_create(
    *,
    account: Account,
    action: str,
    actor: Actor,
    payload: dict[str, Any] | None = None,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    labels: dict[str, str] | None = None,
    task: Task | None = None,
) -> Job:
    """Create one job (see jobs_create)."""
    spec = JobSpec(action, payload or {}, priority, run_at, max_attempts, labels or {})
    return jobs_create(account=account, specs=[spec], actor=actor, task=task)[0]


def task_create(*, account: Account, kind: str, params: dict[str, Any], actor: Actor) -> Task:
    """Create a task and, in the same transaction, the jobs its kind produces."""
    produce = get_task_kind(kind)
    if produce is None:
        raise ValidationFailed.for_field("kind", f"Unknown task kind {kind!r}.")
    if not isinstance(params, dict):
        raise ValidationFailed.for_field("params", "must be an object.")
    try:
        specs = produce(params)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed.for_field("params", str(exc)) from None
    with transaction.atomic():
        task = Task.objects.create(account=account, kind=kind, params=params)
        audit(
            actor=actor,
            command="create_task",
            account_id=account.pk,
            task_id=task.pk,
            data={"kind": kind, "jobs": len(specs)},
        )
        jobs_create(account=account, specs=specs, actor=actor, task=task)
        task.refresh_from_db(fields=["status", "updated_at"])
    return task


def provider_event_ingest(
    *,
    account: Account,
    provider: str,
    type: str,
    external_id: str,
    payload: dict[str, Any],
    actor: Actor,
) -> tuple[ProviderEvent, bool]:
    """Turn a provider event into jobs. Returns (event, created): an event whose external id was
    seen before is returned as it was and creates nothing. A coalescing event type joins a
    scheduled or queued job of the same account and action instead of creating another."""
    route = get_event_route(provider, type)
    if route is None:
        raise ValidationFailed.for_field("type", f"Unknown event type {provider}:{type}.")
    if not external_id or len(external_id) > 255:
        raise ValidationFailed.for_field("external_id", "must be 1 to 255 characters.")
    if not isinstance(payload, dict):
        raise ValidationFailed.for_field("payload", "must be an object.")
    _validate_payload(payload)
    try:
        specs = route.produce(payload)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed.for_field("payload", str(exc)) from None

    def existing() -> ProviderEvent | None:
        return ProviderEvent.objects.filter(
            account=account, provider=provider, external_id=external_id
        ).first()

    if (event := existing()) is not None:
        return event, False
    try:
        with transaction.atomic():
            # The account lock serializes events of one account, so two events arriving together
            # cannot both miss the pending sync and create two.
            Account.objects.select_for_update(no_key=True).filter(pk=account.pk).first()
            event = ProviderEvent.objects.create(
                account=account,
                provider=provider,
                type=type,
                external_id=external_id,
                payload=payload,
            )
            to_create: list[JobSpec] = []
            joined: Job | None = None
            for spec in specs:
                pending = None
                if route.coalesce:
                    pending = (
                        Job.objects.filter(
                            account=account,
                            action=spec.action,
                            status__in=[S.SCHEDULED, S.QUEUED],
                        )
                        .order_by("id")
                        .first()
                    )
                if pending:
                    joined = joined or pending
                else:
                    to_create.append(spec)
            created = jobs_create(
                account=account, specs=to_create, actor=actor, provider_event=event
            )
            event.job = created[0] if created else joined
            event.coalesced = not created and joined is not None
            event.save(update_fields=["job", "coalesced"])
            audit(
                actor=actor,
                command="ingest_event",
                account_id=account.pk,
                job=event.job,
                data={
                    "provider_event_id": event.pk,
                    "type": f"{provider}:{type}",
                    "external_id": external_id,
                    "coalesced": event.coalesced,
                    "created_jobs": [job.pk for job in created],
                },
            )
    except IntegrityError:
        # The same external id arrived concurrently and the other request won.
        event = existing()
        if event is None:
            raise
        return event, False
    return event, True


# --- operator commands -------------------------------------------------------------------------


def job_retry(*, job_id: str, actor: Actor, note: str = "") -> Job:
    """Queue a failed or stalled job now, with one more attempt even if its budget is spent."""
    note = _clean_note(note, required=False)
    with transaction.atomic():
        job = _lock_job(job_id)
        _check_allowed(job, Command.RETRY)
        from_status, now = job.status, timezone.now()
        fields = _requeue(job, now=now)
        _grant_attempt_if_spent(job, fields)
        _save(job, fields, now=now)
        audit(
            actor=actor,
            command=Command.RETRY,
            account_id=job.account_id,
            job=job,
            from_status=from_status,
            to_status=job.status,
            reason=note,
        )
        _refresh_task_statuses([job.task_id])
        enqueue_on_commit([job.pk])
    return job


def job_trigger(*, job_id: str, actor: Actor, force: bool = False, note: str = "") -> Job:
    """Queue a job now, ahead of the line (see jobs.broker.enqueue), ignoring its run_at and an
    account pause. Refused while another job of the same account and action is running, unless
    `force`: two syncs of one mailbox at once are a conflict."""
    note = _clean_note(note, required=False)
    with transaction.atomic():
        job = _lock_job(job_id)
        _check_allowed(job, Command.TRIGGER)
        if not force:
            running = (
                Job.objects.filter(account_id=job.account_id, action=job.action, status=S.RUNNING)
                .exclude(pk=job.pk)
                .values_list("pk", flat=True)
                .first()
            )
            if running:
                raise Conflict(
                    f"Job {running} of the same account and action is running; "
                    "trigger with force to run both at once.",
                    code="sibling_running",
                    extra={"current_status": job.status, "running_job_id": running},
                )
        from_status, now = job.status, timezone.now()
        fields = _requeue(job, now=now)
        _grant_attempt_if_spent(job, fields)
        _save(job, fields, now=now)
        audit(
            actor=actor,
            command=Command.TRIGGER,
            account_id=job.account_id,
            job=job,
            from_status=from_status,
            to_status=job.status,
            reason=note,
            data={"force": force},
        )
        _refresh_task_statuses([job.task_id])
        enqueue_on_commit([job.pk], ahead=True)
    return job


def job_resolve(*, job_id: str, actor: Actor, code: str, note: str) -> Job:
    """Close a job by hand (ignored, fixed elsewhere, cancelled) with a resolution code and note."""
    code = (code or "").strip()
    if not _SLUG.match(code):
        raise ValidationFailed.for_field(
            "code", "must be a short code such as ignored, fixed or cancelled (a-z, 0-9, _ . -)."
        )
    note = _clean_note(note, required=True)
    with transaction.atomic():
        job = _lock_job(job_id)
        _check_allowed(job, Command.RESOLVE)
        from_status, now = job.status, timezone.now()
        job.status = S.RESOLVED
        job.resolution = {"code": code, "note": note, "by": actor.name, "at": now.isoformat()}
        job.finished_at = now
        _save(job, ["status", "resolution", "finished_at"], now=now)
        audit(
            actor=actor,
            command=Command.RESOLVE,
            account_id=job.account_id,
            job=job,
            from_status=from_status,
            to_status=job.status,
            reason=note,
            data={"code": code},
        )
        _refresh_task_statuses([job.task_id])
    return job


def job_update(*, job_id: str, actor: Actor, changes: Mapping[str, Any]) -> Job:
    """Change the mutable fields of a job that is not running. A queued job moved into the
    future goes back to `scheduled`."""
    cleaned = _clean_changes(changes)
    with transaction.atomic():
        job = _lock_job(job_id)
        _check_allowed(job, Command.UPDATE)
        from_status, now = job.status, timezone.now()
        before = {name: getattr(job, name) for name in cleaned}
        for name, value in cleaned.items():
            setattr(job, name, value)
        fields = list(cleaned)
        if "run_at" in cleaned and job.status == S.QUEUED and job.run_at > now:
            job.status = S.SCHEDULED
            job.enqueued_at = None
            fields += ["status", "enqueued_at"]
        _save(job, fields, now=now)
        audit(
            actor=actor,
            command=Command.UPDATE,
            account_id=job.account_id,
            job=job,
            from_status=from_status,
            to_status=job.status,
            data={
                "changes": {
                    name: {"from": _jsonable(before[name]), "to": _jsonable(value)}
                    for name, value in cleaned.items()
                }
            },
        )
        _refresh_task_statuses([job.task_id])
    return job


def job_delete(*, job_id: str, actor: Actor) -> None:
    """Delete a job that is not running. Its audit trail stays."""
    with transaction.atomic():
        job = _lock_job(job_id, for_delete=True)
        _check_allowed(job, Command.DELETE)
        audit(
            actor=actor,
            command=Command.DELETE,
            account_id=job.account_id,
            job=job,
            from_status=job.status,
            data={"action": job.action, "attempt_count": job.attempt_count},
        )
        _delete_job_rows([job.pk])
        _refresh_task_statuses([job.task_id])


SEARCH_DELETE_BATCH = 10_000


def jobs_search_delete(
    *,
    account_id: str,
    filters: Mapping[str, Any],
    actor: Actor,
    dry_run: bool = False,
    batch_size: int = SEARCH_DELETE_BATCH,
) -> dict[str, Any]:
    """Delete every job of one account that `filters` match, except running ones.

    Set-based and batched: each batch locks and deletes up to `batch_size` rows in its own
    transaction, so a large clean-up never holds locks for long. One audit event records the
    filter, the count and the deleted ids; it is written before the first batch and its count
    kept exact with each, so it stays truthful even if the command is interrupted.
    """
    params = normalize_filter_params(filters)
    if not has_filters(params):
        raise ValidationFailed(
            "Refusing to delete without a filter: give at least one filter field.",
            code="empty_filter",
            fields={"filter": ["At least one filter field is required."]},
        )
    matched_qs = filter_jobs(Job.objects.filter(account_id=account_id), params).order_by()
    matched = matched_qs.count()
    if dry_run:
        running = matched_qs.filter(status=S.RUNNING).count()
        return {"matched": matched, "deleted": 0, "skipped_running": running, "dry_run": True}

    filter_record = {name: params.getlist(name) for name in params}
    deleted_ids: list[str] = []
    deletable = matched_qs.exclude(status=S.RUNNING)
    event = audit(
        actor=actor,
        command="search_delete",
        account_id=account_id,
        data={"filter": filter_record, "count": 0, "complete": False},
    )
    complete = False
    try:
        while not complete:
            with transaction.atomic():
                rows = list(
                    deletable.select_for_update(of=("self",))
                    .order_by("pk")
                    .values_list("pk", "task_id")[:batch_size]
                )
                ids = [pk for pk, _ in rows]
                if ids:
                    _delete_job_rows(ids)
                    _refresh_task_statuses(task_id for _, task_id in rows)
                    # The count is kept exact batch by batch; the id list is written once at the
                    # end (rewriting a growing list per batch would be quadratic).
                    AuditEvent.objects.filter(pk=event.pk).update(
                        data={
                            "filter": filter_record,
                            "count": len(deleted_ids) + len(ids),
                            "complete": False,
                        }
                    )
            deleted_ids += ids
            complete = len(ids) < batch_size
    finally:
        AuditEvent.objects.filter(pk=event.pk).update(
            data={
                "filter": filter_record,
                "count": len(deleted_ids),
                "complete": complete,
                "job_ids": deleted_ids,
            }
        )
    running = matched_qs.filter(status=S.RUNNING).count()
    return {
        "matched": matched,
        "deleted": len(deleted_ids),
        "skipped_running": running,
        "dry_run": False,
    }


def _delete_job_rows(ids: list[str]) -> None:
    """Delete jobs and their attempts, and unlink their provider events, with plain statements:
    Django's collector would load every row (and its related rows) into memory first.

    The ids go in as one text parameter (comma-separated on PostgreSQL, where ids never hold a
    comma; a JSON list on SQLite) rather than one placeholder each: for a batch of 10,000 ids,
    building, binding and parsing 10,000 placeholders three times took far longer than the
    deletes themselves (and a list parameter is quoted element by element in Python)."""
    db = transaction.get_connection(router.db_for_write(Job))
    if db.vendor == "postgresql":
        matches, param = "= ANY(string_to_array(%s, ','))", ",".join(ids)
    else:
        matches, param = "IN (SELECT value FROM json_each(%s))", json.dumps(ids)
    attempts, events, jobs = (model._meta.db_table for model in (JobAttempt, ProviderEvent, Job))
    with db.cursor() as cursor:
        cursor.execute(f"DELETE FROM {attempts} WHERE job_id {matches}", [param])
        cursor.execute(f"UPDATE {events} SET job_id = NULL WHERE job_id {matches}", [param])
        cursor.execute(f"DELETE FROM {jobs} WHERE id {matches}", [param])


# --- worker-side transitions ---------------------------------------------------------------------

SYSTEM_WORKER = Actor.system("worker")
SYSTEM_SWEEPER = Actor.system("sweeper")
SYSTEM_DISPATCHER = Actor.system("dispatcher")


def _as_datetime(value: Any) -> datetime:
    # A raw cursor on SQLite returns timestamps as text.
    if isinstance(value, str):
        value = parse_datetime(value)
    return timezone.make_aware(value, UTC) if timezone.is_naive(value) else value


# Claim and success are the hot path of every job, so each is as few round trips as the
# database allows. Both check and move the state in one UPDATE ... RETURNING (a concurrent
# delivery waits on the row, then finds the job no longer queued); no SELECT, no model save.
# On PostgreSQL the attempt and audit rows are written by the same statement (data-modifying
# CTEs), so a claim, and the success of a job without a task, is a single statement that
# commits on its own: all of it or none of it, like the transaction it replaces. The rows it
# writes are the ones core.audit.audit_fields and JobAttempt describe.
_CLAIM_UPDATE_TEMPLATE = """
UPDATE jobs_job
SET status = '{running}', attempt_count = attempt_count + 1, started_at = %(now)s,
    heartbeat_at = %(now)s, finished_at = NULL, worker = %(worker)s, updated_at = %(now)s
WHERE id = %(job_id)s AND status {status_is} '{queued}'
RETURNING account_id, task_id, action, payload, attempt_count, id
"""

# A claim this worker made at this very time and still holds (see job_claim).
_OWN_CLAIM_TEMPLATE = """
SELECT account_id, task_id, action, payload, attempt_count FROM jobs_job
WHERE id = %(job_id)s AND status = '{running}' AND worker = %(worker)s AND started_at = %(now)s
"""

_AUDIT_INSERT = """INSERT INTO jobs_auditevent
    (created_at, actor_type, actor, command, account_id, job_id, task_id, from_status, to_status,
     reason, data)"""

# Once one of its jobs runs, a task is `running` whatever its other jobs do (derive_task_status),
# so the claim sets that directly instead of probing the task's jobs.
_CLAIM_TEMPLATE_POSTGRESQL = """
WITH claimed AS ({claim_update}),
attempt AS (
    INSERT INTO jobs_jobattempt
        (job_id, number, worker, started_at, outcome, error_code, error_detail, traceback)
    SELECT id, attempt_count, %(worker)s::text, %(now)s, '{attempt_running}', '', '', ''
    FROM claimed
),
event AS (
    {audit_insert}
    SELECT %(now)s, '{actor_type}', '{actor}', 'claim', account_id, id, COALESCE(task_id, ''),
        '{queued}', '{running}', '',
        jsonb_build_object('attempt', attempt_count, 'worker', %(worker)s::text)
    FROM claimed
),
task AS (
    UPDATE jobs_task SET status = '{task_running}', updated_at = %(now)s
    WHERE id = (SELECT task_id FROM claimed) AND status <> '{task_running}'
)
SELECT account_id, task_id, action, payload, attempt_count FROM claimed
"""

_SUCCEED_UPDATE_TEMPLATE = """
UPDATE jobs_job
SET status = '{succeeded}', result = %(result)s, finished_at = %(now)s, heartbeat_at = NULL,
    updated_at = %(now)s
WHERE id = %(job_id)s AND status {status_is} '{running}' AND attempt_count = %(attempt)s
    {only_taskless}
RETURNING account_id, task_id, started_at, id
"""

_SUCCEED_TEMPLATE_POSTGRESQL = """
WITH done AS ({succeed_update}),
attempt AS (
    UPDATE jobs_jobattempt SET finished_at = %(now)s, outcome = '{attempt_succeeded}',
        duration_ms = GREATEST(
            0, (EXTRACT(EPOCH FROM %(now)s - (SELECT started_at FROM done)) * 1000)::int
        )
    WHERE job_id = %(job_id)s AND number = %(attempt)s AND EXISTS (SELECT FROM done)
),
event AS (
    {audit_insert}
    SELECT %(now)s, '{actor_type}', '{actor}', 'succeed', account_id, id, COALESCE(task_id, ''),
        '{running}', '{succeeded}', '', jsonb_build_object('attempt', %(attempt)s::int)
    FROM done
)
SELECT account_id, task_id, started_at FROM done
"""

# The code's own constants are written into the statements; only a job's values are sent as
# parameters (each one costs the worker an adaptation on every run).
_SQL_CONSTANTS = {
    "queued": S.QUEUED.value,
    "running": S.RUNNING.value,
    "succeeded": S.SUCCEEDED.value,
    "task_running": TaskStatus.RUNNING.value,
    "attempt_running": AttemptOutcome.RUNNING.value,
    "attempt_succeeded": AttemptOutcome.SUCCEEDED.value,
    "actor_type": SYSTEM_WORKER.type.value,
    "actor": SYSTEM_WORKER.name,
    "audit_insert": _AUDIT_INSERT,
}


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
_CLAIM_UPDATE = _statement(_CLAIM_UPDATE_TEMPLATE, status_is="=")
_OWN_CLAIM = _statement(_OWN_CLAIM_TEMPLATE)
_CLAIM_SQL_POSTGRESQL = _statement(
    _CLAIM_TEMPLATE_POSTGRESQL,
    claim_update=_statement(_CLAIM_UPDATE_TEMPLATE, status_is=_STATUS_IS_POSTGRESQL),
)
_SUCCEED_UPDATE = _statement(_SUCCEED_UPDATE_TEMPLATE, status_is="=", only_taskless="")
_SUCCEED_SQL_POSTGRESQL = _statement(
    _SUCCEED_TEMPLATE_POSTGRESQL,
    succeed_update=_statement(
        _SUCCEED_UPDATE_TEMPLATE, status_is=_STATUS_IS_POSTGRESQL, only_taskless=""
    ),
)
_SUCCEED_TASKLESS_SQL_POSTGRESQL = _statement(
    _SUCCEED_TEMPLATE_POSTGRESQL,
    succeed_update=_statement(
        _SUCCEED_UPDATE_TEMPLATE,
        status_is=_STATUS_IS_POSTGRESQL,
        only_taskless="AND task_id IS NULL",
    ),
)


# Run through libpq, prepared once per connection (core.db.HotStatement).
_CLAIM_POSTGRESQL = HotStatement(_CLAIM_SQL_POSTGRESQL, types={"now": "timestamptz"})
_SUCCEED_TYPES = {"now": "timestamptz", "attempt": "int4", "result": "jsonb"}
_SUCCEED_POSTGRESQL = HotStatement(_SUCCEED_SQL_POSTGRESQL, types=_SUCCEED_TYPES)
_SUCCEED_TASKLESS_POSTGRESQL = HotStatement(_SUCCEED_TASKLESS_SQL_POSTGRESQL, types=_SUCCEED_TYPES)


_PAYLOAD_FIELD = Job._meta.get_field("payload")
_RESULT_FIELD = Job._meta.get_field("result")


@dataclass(frozen=True)
class ClaimedRun:
    """What a worker needs to run a job it claimed: attempt `number` is now open."""

    job_id: str
    account_id: str
    task_id: str | None
    action: str
    payload: dict[str, Any]
    number: int


def job_claim(*, job_id: str, worker: str, claimed_at: datetime | None = None) -> ClaimedRun | None:
    """Claim a queued job for `worker` and open its attempt. Returns None when the job is not
    queued any more (a duplicate or late message, a deleted or resolved job): a no-op.

    A worker retrying its claim after a broken connection passes the same `claimed_at`: if the
    first try did commit (only the reply was lost), that claim is its own and is returned,
    instead of leaving a running job nobody runs for the sweeper (which would cost an attempt).
    """
    params = {"job_id": job_id, "worker": worker, "now": claimed_at or timezone.now()}
    if connection.vendor == "postgresql":
        row = _CLAIM_POSTGRESQL.first_row(params)
        run = None if row is None else _claimed_run(job_id, row)
    else:
        run = _claim_in_transaction(params)
    if run is None:
        with connection.cursor() as cursor:
            cursor.execute(_OWN_CLAIM, params)
            row = cursor.fetchone()
        run = None if row is None else _claimed_run(job_id, row)
    return run


def _claim_in_transaction(params: dict[str, Any]) -> ClaimedRun | None:
    """The claim as one transaction of several statements (SQLite)."""
    job_id, worker, now = params["job_id"], params["worker"], params["now"]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_UPDATE, params)
            row = cursor.fetchone()
        if row is None:
            return None
        run = _claimed_run(job_id, row)
        JobAttempt.objects.create(job_id=job_id, number=run.number, worker=worker, started_at=now)
        audit(
            actor=SYSTEM_WORKER,
            command="claim",
            account_id=run.account_id,
            job_id=job_id,
            task_id=run.task_id,
            from_status=S.QUEUED,
            to_status=S.RUNNING,
            data={"attempt": run.number, "worker": worker},
            now=now,
        )
        _refresh_task_statuses([run.task_id])
    return run


def _claimed_run(job_id: str, row: tuple) -> ClaimedRun:
    account_id, task_id, action, payload, number = row[:5]
    payload = _PAYLOAD_FIELD.from_db_value(payload, None, connection)
    return ClaimedRun(job_id, account_id, task_id, action, payload, int(number))


def job_heartbeat(*, job_id: str, attempt: int) -> bool:
    """Record that the run is alive. False when the run is no longer this attempt's (it was
    declared lost and rescheduled, or deleted). Stamped with the database's clock, which the
    sweeper compares against: workers on other hosts may have clocks that disagree by more
    than the grace."""
    return bool(
        Job.objects.filter(pk=job_id, status=S.RUNNING, attempt_count=attempt).update(
            heartbeat_at=Now()
        )
    )


def _lock_own_run(job_id: str, attempt: int) -> Job | None:
    job = Job.objects.select_for_update(no_key=True).filter(pk=job_id).first()
    if job is None or job.status != S.RUNNING or job.attempt_count != attempt:
        # The sweeper declared this run lost (or an operator deleted the job) while it ran; the
        # outcome of a run we no longer own must not overwrite the newer state.
        return None
    return job


def _close_attempt(
    job: Job,
    attempt: int,
    *,
    now: datetime,
    outcome: str,
    code: str = "",
    detail: str = "",
    tb: str = "",
) -> None:
    started = job.started_at or now
    JobAttempt.objects.filter(job=job, number=attempt).update(
        finished_at=now,
        duration_ms=max(0, int((now - started).total_seconds() * 1000)),
        outcome=outcome,
        error_code=code,
        error_detail=detail,
        traceback=tb,
    )


def job_succeed(*, job_id: str, attempt: int, result: dict[str, Any] | None) -> bool:
    """Close a run as succeeded. False when the run is not ours any more: the sweeper declared
    it lost (or an operator deleted the job) while it ran, and the outcome of a run we no
    longer own must not overwrite the newer state."""
    now = timezone.now()
    # JSON text (or NULL), which the statement's jsonb column or parameter takes as it is.
    stored_result = None if result is None else json.dumps(result, cls=_RESULT_FIELD.encoder)
    params = {"job_id": job_id, "attempt": attempt, "result": stored_result, "now": now}
    postgresql = connection.vendor == "postgresql"
    # A job without a task needs nothing beyond the statement, which commits on its own; a
    # task's status must be derived in the same transaction, below.
    if (
        postgresql
        and not connection.in_atomic_block
        and _SUCCEED_TASKLESS_POSTGRESQL.first_row(params) is not None
    ):
        return True
    with transaction.atomic():
        if postgresql:
            row = _SUCCEED_POSTGRESQL.first_row(params)
        else:
            with connection.cursor() as cursor:
                cursor.execute(_SUCCEED_UPDATE, params)
                row = cursor.fetchone()
        if row is None:
            return False
        account_id, task_id, started_at = row[:3]
        if not postgresql:
            duration = now - _as_datetime(started_at)
            JobAttempt.objects.filter(job_id=job_id, number=attempt).update(
                finished_at=now,
                duration_ms=max(0, int(duration.total_seconds() * 1000)),
                outcome=AttemptOutcome.SUCCEEDED,
            )
            audit(
                actor=SYSTEM_WORKER,
                command="succeed",
                account_id=account_id,
                job_id=job_id,
                task_id=task_id,
                from_status=S.RUNNING,
                to_status=S.SUCCEEDED,
                data={"attempt": attempt},
                now=now,
            )
        _refresh_task_statuses([task_id])
    return True


def job_fail(
    *,
    job_id: str,
    attempt: int,
    code: str,
    detail: str,
    retryable: bool,
    traceback: str = "",
    timed_out: bool = False,
) -> Job | None:
    """Close a run as failed: scheduled again after a backoff when the error is retryable and
    attempts remain, failed otherwise. None when the run is not ours any more."""
    with transaction.atomic():
        job = _lock_own_run(job_id, attempt)
        if job is None:
            return None
        now = timezone.now()
        policy = policy_for(job.action)
        retry = policy.is_retryable(code, retryable) and job.attempt_count < job.max_attempts
        if retry:
            job.status = S.SCHEDULED
            job.run_at = now + timedelta(seconds=policy.backoff_seconds(attempt))
            job.finished_at = None
        else:
            job.status = S.FAILED
            job.finished_at = now
        job.last_error_code = code
        job.last_error_detail = detail
        job.last_error_at = now
        job.heartbeat_at = None
        job.enqueued_at = None
        _save(
            job,
            [
                *("status", "run_at", "finished_at", "last_error_code", "last_error_detail"),
                *("last_error_at", "heartbeat_at", "enqueued_at"),
            ],
            now=now,
        )
        if timed_out:
            outcome = AttemptOutcome.TIMEOUT
        else:
            outcome = AttemptOutcome.RETRY_SCHEDULED if retry else AttemptOutcome.FAILED
        _close_attempt(
            job, attempt, now=now, outcome=outcome, code=code, detail=detail, tb=traceback
        )
        audit(
            actor=SYSTEM_WORKER,
            command="fail",
            account_id=job.account_id,
            job=job,
            from_status=S.RUNNING,
            to_status=job.status,
            reason=detail[:500],
            data={
                "attempt": attempt,
                "error_code": code,
                "retry_at": job.run_at.isoformat() if retry else None,
            },
            now=now,
        )
        _refresh_task_statuses([job.task_id])
    return job


def jobs_sweep_lost(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Declare lost the running jobs whose worker stopped heart-beating (killed, lost, cut off)
    or that outran their timeout plus the grace: `stalled` with error `worker_lost`, then
    rescheduled at once when attempts remain."""
    grace = timedelta(seconds=settings.JOBS_STALL_GRACE_SECONDS)
    # Heartbeats carry the database's clock (job_heartbeat), so staleness is judged by it too.
    stale_before = (now or Now()) - grace
    now = now or timezone.now()
    candidates = Job.objects.filter(status=S.RUNNING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    )
    swept: list[str] = []
    with transaction.atomic():
        jobs = list(
            candidates.select_for_update(skip_locked=True, no_key=True).order_by("pk")[:limit]
        )
        for job in jobs:
            _declare_lost(job, now=now)
            swept.append(job.pk)
        _refresh_task_statuses(job.task_id for job in jobs)
    # A worker that is alive but stuck past its action's timeout (the hard timeout did not fire).
    overdue = [
        job
        # Oldest first, so the limit cannot hide an overdue run behind younger ones.
        for job in Job.objects.filter(status=S.RUNNING, started_at__lt=now - grace)
        .only("pk", "action", "started_at", "attempt_count")
        .order_by("started_at")[:limit]
        if job.started_at + timedelta(seconds=policy_for(job.action).effective_timeout) + grace
        < now
    ]
    if overdue:
        with transaction.atomic():
            # The same runs that were read: a job that finished and was claimed again since
            # is a new run, not an overdue one.
            same_run = Q()
            for job in overdue:
                same_run |= Q(pk=job.pk, attempt_count=job.attempt_count)
            jobs = list(
                Job.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(same_run, status=S.RUNNING)
                .order_by("pk")
            )
            for job in jobs:
                _declare_lost(job, now=now, detail="The run outlived its timeout and its grace.")
                swept.append(job.pk)
            _refresh_task_statuses(job.task_id for job in jobs)
    if swept:
        logger.warning("declared %d lost run(s): %s", len(swept), ", ".join(swept[:20]))
    return swept


def _declare_lost(job: Job, *, now: datetime, detail: str = "") -> None:
    detail = detail or (
        f"Worker {job.worker or '?'} stopped heart-beating "
        f"(last heartbeat {job.heartbeat_at.isoformat() if job.heartbeat_at else 'never'})."
    )
    _close_attempt(
        job,
        job.attempt_count,
        now=now,
        outcome=AttemptOutcome.WORKER_LOST,
        code="worker_lost",
        detail=detail,
    )
    job.status = S.STALLED
    job.last_error_code = "worker_lost"
    job.last_error_detail = detail
    job.last_error_at = now
    job.heartbeat_at = None
    job.finished_at = now
    job.enqueued_at = None
    audit(
        actor=SYSTEM_SWEEPER,
        command="stall",
        account_id=job.account_id,
        job=job,
        from_status=S.RUNNING,
        to_status=S.STALLED,
        reason=detail,
        data={"attempt": job.attempt_count, "worker": job.worker},
        now=now,
    )
    if job.attempt_count < job.max_attempts:
        job.status = S.SCHEDULED
        job.run_at = now + timedelta(
            seconds=policy_for(job.action).backoff_seconds(job.attempt_count)
        )
        job.finished_at = None
        audit(
            actor=SYSTEM_SWEEPER,
            command="reschedule",
            account_id=job.account_id,
            job=job,
            from_status=S.STALLED,
            to_status=S.SCHEDULED,
            reason="Attempts remain after a lost run.",
            data={"run_at": job.run_at.isoformat()},
            now=now,
        )
    _save(
        job,
        [
            *("status", "run_at", "last_error_code", "last_error_detail", "last_error_at"),
            *("heartbeat_at", "finished_at", "enqueued_at"),
        ],
        now=now,
    )


def jobs_dispatch_due(*, now: datetime | None = None, limit: int | None = None) -> list[str]:
    """Move due `scheduled` jobs of active accounts to the broker, highest priority first.
    SKIP LOCKED lets several dispatchers share the work without waiting on each other."""
    now = now or timezone.now()
    limit = limit or settings.JOBS_DISPATCH_BATCH
    with transaction.atomic():
        jobs = list(
            Job.objects.filter(status=S.SCHEDULED, run_at__lte=now, account__paused_at__isnull=True)
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .order_by("-priority", "run_at", "pk")
            .only("pk", "account_id", "task_id")[:limit]
        )
        if not jobs:
            return []
        ids = [job.pk for job in jobs]
        Job.objects.filter(pk__in=ids).update(status=S.QUEUED, enqueued_at=now, updated_at=now)
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    **audit_fields(
                        actor=SYSTEM_DISPATCHER,
                        command="dispatch",
                        account_id=job.account_id,
                        job=job,
                        from_status=S.SCHEDULED,
                        to_status=S.QUEUED,
                        now=now,
                    )
                )
                for job in jobs
            ]
        )
        _refresh_task_statuses(job.task_id for job in jobs)
        enqueue_on_commit(ids)
    return ids


def jobs_requeue_unclaimed(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Enqueue again the queued jobs that no worker claimed within the bound, longest-waiting
    first: their message may have been lost (a broker crash, a cluster killed with messages it
    had taken, an enqueue that failed after commit). A duplicate is harmless: the claim of a
    job that is not queued any more is a no-op.

    The broker cannot tell a lost message from one still waiting behind a long backlog (its
    count is no help: clusters take messages ahead of their workers, and messages of jobs
    resolved or deleted while queued linger), so a job that only waited that long is sent
    again too: back in its place in the line (jobs.broker.enqueue_again), not at its end,
    where the duplicate would only lengthen the backlog."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.JOBS_REQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        waiting_since = dict(
            Job.objects.filter(status=S.QUEUED)
            .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True))
            .select_for_update(skip_locked=True, no_key=True)
            .order_by("enqueued_at", "pk")
            .values_list("pk", "enqueued_at")[:limit]
        )
        if not waiting_since:
            return []
        ids = list(waiting_since)
        Job.objects.filter(pk__in=ids).update(enqueued_at=now)
        enqueue_again_on_commit(waiting_since)
    logger.warning("enqueued again %d unclaimed job(s): %s", len(ids), ", ".join(ids[:20]))
    return ids


# --- validation of inputs ----------------------------------------------------------------------


def _clean_note(note: Any, *, required: bool) -> str:
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise ValidationFailed.for_field("note", "must be a string.")
    note = note.strip()
    if required and not note:
        raise ValidationFailed.for_field("note", "is required: say why.")
    if len(note) > 2000:
        raise ValidationFailed.for_field("note", "is too long (2000 characters at most).")
    return note


def _validate_payload(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise ValidationFailed.for_field("payload", "must be an object.")
    try:
        size = len(json.dumps(payload))
    except (TypeError, ValueError):
        raise ValidationFailed.for_field("payload", "must be JSON.") from None
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationFailed.for_field(
            "payload", f"is too large ({MAX_PAYLOAD_BYTES} bytes at most)."
        )


def _validate_labels(labels: Any) -> None:
    if not isinstance(labels, dict):
        raise ValidationFailed.for_field("labels", "must be an object of string values.")
    if len(labels) > MAX_LABELS:
        raise ValidationFailed.for_field("labels", f"at most {MAX_LABELS} labels.")
    for key, value in labels.items():
        if not _LABEL_KEY.match(str(key)):
            raise ValidationFailed.for_field(
                "labels", f"bad key {key!r} (letters, digits, - and _)."
            )
        if not isinstance(value, str) or len(value) > 200:
            raise ValidationFailed.for_field(
                "labels", f"value of {key!r} must be a string (200 max)."
            )


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.for_field(name, "must be an integer.")
    if not low <= value <= high:
        raise ValidationFailed.for_field(name, f"must be between {low} and {high}.")
    return value


def _clean_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationFailed(
            "Nothing to update: give one of " + ", ".join(MUTABLE_FIELDS) + ".",
            fields={"non_field_errors": ["No field to update."]},
        )
    immutable = sorted(set(changes) - set(MUTABLE_FIELDS))
    if immutable:
        raise ValidationFailed(
            f"Field(s) cannot be changed: {', '.join(immutable)}. "
            f"Mutable fields: {', '.join(MUTABLE_FIELDS)}.",
            code="immutable_field",
            fields={name: ["This field cannot be changed."] for name in immutable},
        )
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "priority":
            cleaned[name] = _int_in(name, value, -1000, 1000)
        elif name == "max_attempts":
            cleaned[name] = _int_in(name, value, 1, 100)
        elif name == "run_at":
            cleaned[name] = _clean_datetime(name, value)
        elif name == "payload":
            _validate_payload(value)
            cleaned[name] = value
        elif name == "labels":
            _validate_labels(value)
            cleaned[name] = value
    return cleaned


def _clean_datetime(name: str, value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise ValidationFailed.for_field(name, "must be an ISO 8601 date-time.")
    if timezone.is_naive(parsed):
        raise ValidationFailed.for_field(name, "must include a time zone (for example Z).")
    return parsed


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
