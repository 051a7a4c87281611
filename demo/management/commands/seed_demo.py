"""Demo data: accounts, tasks and jobs in every status, made through the services so their
attempts and audit trails are what real work would have left. Demo code, apart from the
product."""

from __future__ import annotations

import random
from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from accounts.services import account_create, account_pause
from core.actors import Actor, ActorType
from jobs import services
from jobs.execution.actions.registry import JobSpec
from jobs.models import Job
from jobs.states import JobStatus

SEED = Actor.system("demo-seed")

# (code, detail, retryable): what real providers answer.
FAILURES = [
    ("provider_timeout", "IMAP connection to imap.{domain}:993 timed out after 30s", True),
    (
        "provider_auth_failed",
        "IMAP server imap.{domain} rejected the credentials (AUTHENTICATIONFAILED)",
        False,
    ),
    ("provider_unavailable", "IMAP connection to imap.{domain}:993 refused", True),
    (
        "provider_tls_error",
        "TLS handshake with imap.{domain}:993 failed: certificate has expired",
        False,
    ),
    (
        "provider_protocol_error",
        "IMAP server imap.{domain} answered FETCH with BAD: command unknown",
        False,
    ),
]

DEMO_ACCOUNTS = [
    ("Acme Support", "support@acme.example"),
    ("Globex Sales", "sales@globex.example"),
    ("Initech Billing", "billing@initech.example"),
    ("Umbrella Ops", "ops@umbrella.example"),
]


# The worker of the seeded runs that "vanished" (it never existed): the scheduler declares them
# lost at the demo's start, which is the recovery the demo shows.
GONE_WORKER = "worker-gone:999"


def seeded_lost_runs_note() -> str:
    """What the demo's start-up says about the lost runs it seeded, so that the scheduler's
    "declared N lost run(s)" a few seconds later reads as expected, not as a fault."""
    seeded = Job.objects.filter(worker=GONE_WORKER, status=JobStatus.RUNNING).count()
    if not seeded:
        return ""
    return (
        f"Seeded on purpose: {seeded} run(s) claimed by a worker that is gone ({GONE_WORKER}).\n"
        f"Within {settings.JOBS_STALL_GRACE_SECONDS:g} s the scheduler logs "
        f'"declared {seeded} lost run(s)": it is the\n'
        "stall sweeper recovering them (each has attempts left, so it is rescheduled and runs).\n"
    )


class Command(BaseCommand):
    help = "Load demo accounts, tasks and jobs in every status, and the demo operators."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--force", action="store_true", help="Load even if demo data exists.")
        parser.add_argument("--password", default="operator", help="Password of the demo users.")

    def handle(
        self, *args: Any, force: bool = False, password: str = "operator", **options: Any
    ) -> None:
        self.ensure_operators(password)
        if Account.objects.filter(email__endswith=".example").exists() and not force:
            self.stdout.write("Demo data already loaded (use --force to add more).")
            return
        rng = random.Random(7)
        with transaction.atomic():
            for name, email in DEMO_ACCOUNTS:
                account = account_create(name=name, email=email, actor=SEED)
                self.seed_account(account, rng)
            paused = account_create(
                name="Hooli Archive (paused)", email="archive@hooli.example", actor=SEED
            )
            services.jobs_create(
                account=paused, specs=[JobSpec("noop") for _ in range(3)], actor=SEED
            )
            account_pause(account_id=paused.pk, actor=SEED, reason="Customer asked to hold syncs")
        self.stdout.write(self.style.SUCCESS(f"Demo data loaded: {Job.objects.count()} jobs."))

    def ensure_operators(self, password: str) -> None:
        User = get_user_model()
        if not User.objects.filter(username="operator").exists():
            User.objects.create_superuser("operator", "operator@jobs.example", password)
        viewers, _ = Group.objects.get_or_create(name="Read-only operators")
        viewers.permissions.set(Permission.objects.filter(codename__startswith="view_"))
        if not User.objects.filter(username="viewer").exists():
            viewer = User.objects.create_user(
                "viewer", "viewer@jobs.example", password, is_staff=True
            )
            viewer.groups.add(viewers)

    def seed_account(self, account: Account, rng: random.Random) -> None:
        domain = account.email.split("@")[1]
        # Finished syncs.
        task = services.task_create(account=account, kind="mailbox_sync", params={}, actor=SEED)
        for job in task.jobs.all():
            self.run(job, result={"folders": {"INBOX": {"fetched": rng.randint(3, 400)}}})
        for _ in range(rng.randint(6, 12)):
            job = self.create(account, "imap_sync_messages")
            self.run(job, result={"folders": {"INBOX": {"fetched": rng.randint(0, 50)}}})
        # Failures an operator must look at, with their attempts.
        for code, detail, retryable in rng.sample(FAILURES, 3):
            for _ in range(rng.randint(1, 4)):
                job = self.create(account, "imap_sync_messages", max_attempts=3 if retryable else 5)
                self.fail_until_done(job, code, detail.format(domain=domain), retryable)
        # A lost worker with no attempts left.
        job = self.create(account, "imap_sync_messages", max_attempts=1)
        services.job_claim(job_id=job.pk, worker="worker-7f3a:4121")
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
        services.jobs_sweep_lost()
        # A run whose worker vanished a moment ago: the sweeper will declare it lost within
        # JOBS_STALL_GRACE_SECONDS of the demo starting and reschedule it (attempts remain).
        job = self.create(account, "sleep", payload={"seconds": 1})
        services.job_claim(job_id=job.pk, worker=GONE_WORKER)
        # Closed by hand.
        job = self.create(account, "imap_sync_messages", max_attempts=1)
        code, detail, _ = FAILURES[1]
        self.fail_until_done(job, code, detail.format(domain=domain), False)
        services.job_resolve(
            job_id=job.pk,
            actor=Actor(ActorType.USER, "user:operator"),
            code="fixed",
            note="Customer rotated the app password; next sync will pick it up.",
        )
        # Waiting: a retry backoff and a delayed job.
        job = self.create(account, "imap_sync_messages")
        self.fail_once(job, "provider_timeout", FAILURES[0][1].format(domain=domain))
        self.create(account, "noop", run_at=timezone.now() + timedelta(hours=rng.randint(1, 6)))
        # Live work for the demo workers: these really run when the cluster starts.
        self.create(account, "sleep", payload={"seconds": rng.choice([1, 2, 3])})
        self.create(account, "noop")
        self.create(
            account,
            "fail",
            payload={
                "code": "provider_unavailable",
                "detail": f"IMAP connection to imap.{domain}:993 refused",
            },
            max_attempts=2,
        )

    def create(
        self,
        account: Account,
        action: str,
        *,
        payload: dict[str, Any] | None = None,
        max_attempts: int | None = None,
        run_at: datetime | None = None,
    ) -> Job:
        spec = JobSpec(action, payload or {}, 0, run_at, max_attempts)
        return services.jobs_create(account=account, specs=[spec], actor=SEED)[0]

    def run(self, job: Job, *, result: dict[str, Any]) -> None:
        attempt = services.job_claim(job_id=job.pk, worker="worker-7f3a:4120")
        assert attempt is not None  # a job just created runs now
        services.job_succeed(job_id=job.pk, attempt=attempt.number, result=result)

    def fail_once(self, job: Job, code: str, detail: str, retryable: bool = True) -> Job:
        attempt = services.job_claim(job_id=job.pk, worker="worker-7f3a:4120")
        assert attempt is not None  # a job just created or retried runs now
        failed = services.job_fail(
            job_id=job.pk, attempt=attempt.number, code=code, detail=detail, retryable=retryable
        )
        assert failed is not None  # nothing else touches the demo's jobs meanwhile
        return failed

    def fail_until_done(self, job: Job, code: str, detail: str, retryable: bool) -> None:
        while True:
            job = self.fail_once(job, code, detail, retryable)
            if job.status != "scheduled":
                return
            # Skip the backoff: make the retry due and dispatch it.
            Job.objects.filter(pk=job.pk).update(run_at=timezone.now())
            services.jobs_dispatch_due()
