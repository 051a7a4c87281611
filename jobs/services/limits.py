"""Per-account concurrency limits: at most N jobs of one action run at once for one account.

The limit is the action's policy (ActionPolicy.per_account_limit: `imap_sync_messages` runs one
at a time per mailbox), or the account's own (jobs.models.ConcurrencyLimit, set in the admin and
the API). It is enforced in one place, the claim (jobs.services.execution.job_claim), which every
path to a run goes through: dispatch, retries, triggers, bulk operations, the sweeper's
reschedules. A claim of a job a limit applies to counts the account's running jobs of the
action under a lock of that pair (jobs.sql.LIMIT_LOCK, across processes and hosts); when they
fill the limit, the job is held: `scheduled` with wait_reason `concurrency_limit`, no attempt
spent, no message left, so nothing spins. It is released (queued and sent again) when a run of
the same account and action ends: by the worker that ran it, by the sweeper when it declares
the run lost (the slot of a killed worker frees then), and by the scheduler's periodic
`jobs_release_waiting_all` for anything those missed (a worker killed between its outcome and
its release, a limit raised). Trigger asks the same rule first (409 unless `force`; a forced
trigger's next claim may go over the limit).
"""

from __future__ import annotations

import json
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from core.actors import Actor
from core.audit import AuditCommand, audit, audit_fields
from core.errors import Conflict
from core.models import AuditEvent
from jobs import sql
from jobs.execution.actions.registry import limited_action_names, policy_for
from jobs.execution.broker import enqueue_on_commit
from jobs.models import ConcurrencyLimit, Job
from jobs.services import _rows
from jobs.states import SYSTEM_LIMITER, WAITING_SLOT_Q, JobStatus, WaitReason

# Jobs one release queues at most (a raised limit frees many slots at once).
RELEASE_BATCH = 500
# (account, action) pairs the scheduler's safety net looks at per round.
RELEASE_PAIRS = 200


def effective_limit(account_id: str, action: str) -> int | None:
    """How many jobs of `action` may run at once for the account: its own limit if it set
    one, else the action's policy; None for no limit."""
    own = (
        ConcurrencyLimit.objects.filter(account_id=account_id, action=action)
        .values_list("limit", flat=True)
        .first()
    )
    return own if own is not None else policy_for(action).per_account_limit


def policy_limited_param(vendor: str) -> str:
    """The %(limited)s parameter of the hot claim (jobs.sql._UNLIMITED): the actions whose
    policy sets a limit."""
    names = limited_action_names()
    return ",".join(names) if vendor == "postgresql" else json.dumps(names)


def lock_slots(account_id: str, action: str) -> None:
    """Serialize decisions about this pair's slots until the transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.LIMIT_LOCK, {"key": f"jobs.limit:{account_id}:{action}"})


def _running(account_id: str, action: str, *, at_most: int, exclude: str = "") -> list[str]:
    # At most `at_most` ids: the decision needs no more, and the read stays one short scan of
    # job_account_status_id however many jobs run.
    query = Job.objects.filter(account_id=account_id, action=action, status=JobStatus.RUNNING)
    if exclude:
        query = query.exclude(pk=exclude)
    return list(query.values_list("pk", flat=True)[:at_most])


def take_slot(job: Job, *, now: datetime) -> bool:
    """For the claim of `job` (queued, locked by the caller, a limit may apply): True when a
    slot is free (the caller claims it in this transaction, under the pair's lock); otherwise
    hold the job and return False."""
    lock_slots(job.account_id, job.action)
    limit = effective_limit(job.account_id, job.action)
    if limit is None:
        return True
    running = _running(job.account_id, job.action, at_most=limit)
    if len(running) < limit:
        return True
    fields = _rows.move_to(job, JobStatus.SCHEDULED, now=now)
    job.wait_reason = WaitReason.CONCURRENCY_LIMIT
    _rows.save(job, [*fields, "wait_reason"], now=now)
    audit(
        actor=SYSTEM_LIMITER,
        command=AuditCommand.HOLD,
        account_id=job.account_id,
        job=job,
        from_status=JobStatus.QUEUED,
        to_status=JobStatus.SCHEDULED,
        reason=f"{len(running)} of at most {limit} {job.action} jobs of the account are running.",
        data={"limit": limit, "running": running},
        now=now,
    )
    _rows.refresh_task_statuses([job.task_id])
    return False


def check_trigger(job: Job) -> None:
    """Trigger without force: Conflict (409) when the account already runs as many jobs of
    the action as its limit allows; for an action without a limit, when another one runs
    (PRODUCT: two syncs of one mailbox at once are a conflict)."""
    limit = effective_limit(job.account_id, job.action) or 1
    running = _running(job.account_id, job.action, at_most=limit, exclude=job.pk)
    if len(running) >= limit:
        raise Conflict(
            f"Job {running[0]} of the same account and action is running"
            + (f" ({len(running)} of at most {limit})" if limit > 1 else "")
            + "; trigger with force to run beside it.",
            code="sibling_running",
            extra={"current_status": job.status, "running_job_id": running[0], "limit": limit},
        )


def pairs_at_limit(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (account, action) pairs among `pairs` that already run as many jobs as check_trigger
    allows: the same rule for a batch of triggers (jobs.services._batch)."""
    full = set()
    for account_id, action in sorted(pairs):
        limit = effective_limit(account_id, action) or 1
        if len(_running(account_id, action, at_most=limit)) >= limit:
            full.add((account_id, action))
    return full


def jobs_release_waiting(*, account_id: str, action: str, now: datetime | None = None) -> list[str]:
    """Queue the jobs of the pair held by its limit, as many as there are free slots (the
    limit less the jobs running or already queued, which will take slots first), highest
    priority and longest waiting first. Safe to call at any time and from anywhere: the
    claim checks the limit again."""
    now = now or timezone.now()
    with transaction.atomic():
        lock_slots(account_id, action)
        limit = effective_limit(account_id, action)
        free = RELEASE_BATCH
        if limit is not None:
            busy = Job.objects.filter(
                account_id=account_id,
                action=action,
                status__in=[JobStatus.RUNNING, JobStatus.QUEUED],
            ).values_list("pk", flat=True)[:limit]
            free = min(limit - len(busy), RELEASE_BATCH)
        if free <= 0:
            return []
        held = list(
            Job.objects.filter(
                WAITING_SLOT_Q,
                account_id=account_id,
                action=action,
                status=JobStatus.SCHEDULED,
                # A paused account's jobs stay scheduled, as the dispatcher leaves them.
                account__paused_at__isnull=True,
            )
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .order_by("-priority", "run_at", "pk")
            .only("pk", "account_id", "task_id")[:free]
        )
        if not held:
            return []
        ids = [job.pk for job in held]
        Job.objects.filter(pk__in=ids).update(
            status=JobStatus.QUEUED, wait_reason="", enqueued_at=now, updated_at=now
        )
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    **audit_fields(
                        actor=SYSTEM_LIMITER,
                        command=AuditCommand.RELEASE,
                        account_id=job.account_id,
                        job=job,
                        from_status=JobStatus.SCHEDULED,
                        to_status=JobStatus.QUEUED,
                        data={"limit": limit},
                        now=now,
                    )
                )
                for job in held
            ]
        )
        _rows.refresh_task_statuses(job.task_id for job in held)
        enqueue_on_commit(ids)
    return ids


def jobs_release_pairs(pairs: set[tuple[str, str]]) -> list[str]:
    """jobs_release_waiting for each (account, action) pair whose limit applies."""
    released: list[str] = []
    for account_id, action in sorted(pairs):
        released += jobs_release_waiting(account_id=account_id, action=action)
    return released


def jobs_release_waiting_all() -> list[str]:
    """The scheduler's safety net: release what a slot that freed without a release (a worker
    killed after its outcome, a limit raised or removed) leaves waiting. One probe of the
    partial index job_waiting_slot when nothing waits."""
    pairs = set(
        Job.objects.filter(WAITING_SLOT_Q, status=JobStatus.SCHEDULED)
        .order_by()
        .values_list("account_id", "action")
        .distinct()[:RELEASE_PAIRS]
    )
    return jobs_release_pairs(pairs)


def limits_of_account(account_id: str) -> dict[str, dict[str, int | None]]:
    """For every registered action that has a limit for the account (its policy's or its
    own): {"limit": effective, "default": the policy's, "own": the account's or None}."""
    from jobs.execution.actions.registry import action_names

    own = dict(
        ConcurrencyLimit.objects.filter(account_id=account_id).values_list("action", "limit")
    )
    result: dict[str, dict[str, int | None]] = {}
    for name in sorted({*action_names(), *own}):
        default = policy_for(name).per_account_limit
        mine = own.get(name)
        if default is None and mine is None:
            continue
        result[name] = {
            "limit": mine if mine is not None else default,
            "default": default,
            "own": mine,
        }
    return result


def account_limit_set(*, account_id: str, action: str, limit: int | None, actor: Actor) -> None:
    """Set the account's own limit for `action` (None: back to the policy's), audited, and
    release what the new limit lets run."""
    with transaction.atomic():
        lock_slots(account_id, action)
        before = effective_limit(account_id, action)
        if limit is None:
            ConcurrencyLimit.objects.filter(account_id=account_id, action=action).delete()
        else:
            ConcurrencyLimit.objects.update_or_create(
                account_id=account_id,
                action=action,
                defaults={"limit": limit, "updated_at": timezone.now()},
            )
        audit(
            actor=actor,
            command=AuditCommand.UPDATE_ACCOUNT,
            account_id=account_id,
            data={
                "concurrency_limit": {
                    "action": action,
                    "from": before,
                    "to": effective_limit(account_id, action),
                    "own": limit,
                }
            },
        )
    jobs_release_waiting(account_id=account_id, action=action)
