"""A simulated month (issue 17): 30 days of operation driven at the pace the machine allows, to
show that the tables level off under retention and that pages and API reads do not degrade.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_month python3 dev.py bench month \
        [--accounts 16] [--interval-minutes 30] [--days 30] [--out var/bench]

PostgreSQL only, and a database of its own: DATABASE_URL must name a database whose name starts
with `bench_month`, which the bench drops, creates again and migrates (from the server's
`postgres` database) at each run, so every run starts from empty tables. Nothing else is
touched.

What runs. The clock is moved through the month by time-machine, in-process, in ticks of
`--tick-seconds` (300) simulated seconds; every tick is one round of the scheduler's loop
(jobs/management/commands/jobs_scheduler.py), in its order: due schedules fired, due jobs
dispatched, the sweeps (lost runs, unclaimed messages, held jobs), bulk operations handed out,
rollups, and retention's `Pruner` with the default policy (succeeded 7 d, resolved 30 d, audit
events 90 d; failed and stalled jobs kept), paced on the simulated clock (`Pruner(clock=...)`;
the scheduler paces it on the monotonic clock, which a month in ten minutes cannot follow).
Then the workers' part: the messages the broker holds (django-q2's ORM queue table, written by
the services) are taken and acknowledged, and each one is run as jobs.execution.worker runs it,
through the same service calls: `job_claim`, then `job_succeed` or `job_fail` with an error
code (the handler itself, an IMAP sync, is not run: its outcome is drawn), then
`jobs_release_waiting` for a run the per-account limit applied to; a bulk operation's message
runs `bulk_operation_run`. Not through django-q2's cluster: 30 days at real speed are
impossible, and a cluster's processes cannot share the simulated clock.

The month: `--accounts` mailboxes, created through the API (`POST /api/accounts` with IMAP
settings, which gives each its default `mailbox_sync` schedule, every `--interval-minutes`);
a share of attempts fails with `provider_timeout` (retried by the action's policy, most then
succeed) and a smaller one with `provider_auth_failed` (failed at once, kept by the policy). On
`--incident-day` a provider outage makes most attempts fail with `provider_timeout` from 09:00
to 11:00; at 11:30 an operator retries every failed `provider_timeout` job across accounts with
one bulk operation (`POST /api/bulk-operations`, default pace), whose batches the workers run.

At the end of each simulated day: rows of jobs, attempts, audit events and tasks, their bytes
(`pg_total_relation_size`, indexes and TOAST included), and, warm, the median and p95 of
`--repeat` (20) runs of: the API job list of the account with most jobs, an API search on it
(operator API key), the admin queue and the dashboard (a logged-in superuser), all in-process
through django.test.Client.

Maintenance. Nothing is vacuumed by hand, but autovacuum cannot follow a simulated clock (it
looks at the tables every real minute, `autovacuum_naptime`: two simulated days here), and a
server may have it off (the shared one this was written on does, for a bulk load). So by default
(`--autovacuum emulate`) each round applies autovacuum's own rule with PostgreSQL's default
settings, on the simulated clock: a plain VACUUM (never FULL) of each table whose dead rows
exceed 50 + 20% of its rows or whose inserts since the last vacuum exceed 1,000 + 20%, an
ANALYZE of each whose changes exceed 50 + 10%, as the autovacuum launcher would decide it
(pg_stat_user_tables). `--autovacuum server` leaves maintenance to the server's own autovacuum
(its setting is printed). Output: a table per day (printed, and <out>/month.md), a chart
(<out>/month.svg, written here: rows and MB per day, timings per day) and two verdicts: the
growth of each table over the last 7 days beside the first 7, and the last week's median time
of each read beside the first week's. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import textwrap
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from psycopg import sql

from accounts.apikeys import api_key_create
from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.execution.broker import BULK_ENTRY
from jobs.execution.mailsync.client import AUTH_FAILED, TIMEOUT
from jobs.models import Job, JobAttempt, Task
from jobs.monitoring import heartbeats, rollups
from jobs.states import JobStatus
from tests.bench.timing import p95, timed

TABLES = {
    "jobs": Job._meta.db_table,
    "attempts": JobAttempt._meta.db_table,
    "audit": AuditEvent._meta.db_table,
    "tasks": Task._meta.db_table,
}
READS = ("api list", "api search", "admin queue", "dashboard")
WORKER = "bench-month:1"
DAY = timedelta(days=1)


@dataclass
class Day:
    number: int
    created: int = 0  # jobs created that day
    runs: int = 0
    failed_runs: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    failed_kept: int = 0  # jobs in `failed` at the end of the day (the policy keeps them)
    vacuums: int = 0  # VACUUMs the autovacuum rule ran that day (--autovacuum emulate)
    reads: dict[str, tuple[float, float]] = field(default_factory=dict)  # median, p95 (ms)
    wall: float = 0.0  # seconds this day took to drive (without the timings)

    @property
    def megabytes(self) -> float:
        return sum(self.size.values()) / 2**20


# --- the database of its own -------------------------------------------------------------------


def fresh_database() -> str:
    """Drop and create the database DATABASE_URL names (bench_month...), then migrate it."""
    options = connection.settings_dict
    name = options["NAME"]
    connection.close()
    server = {
        "host": options.get("HOST") or None,
        "port": options.get("PORT") or None,
        "user": options.get("USER") or None,
        "password": options.get("PASSWORD") or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        ident = sql.Identifier(name)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    call_command("migrate", interactive=False, verbosity=0)
    return name


# --- one round of the scheduler, and the workers ----------------------------------------------


class Month:
    def __init__(self, args: argparse.Namespace, traveller: Any) -> None:
        self.args = args
        self.traveller = traveller
        self.rng = random.Random(args.seed)
        self.pruner = services.Pruner(clock=time.time)  # time.time: the simulated clock
        self.outage: tuple[datetime, datetime] | None = None
        self.runs = self.failed_runs = 0
        self.bulk: list[str] = []
        self.vacuums = 0

    def autovacuum(self) -> None:
        """Autovacuum's rule with the default settings (see the module's docstring)."""
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT s.relname, s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0)
                    OR s.n_ins_since_vacuum > 1000 + 0.2 * greatest(c.reltuples, 0),
                    s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
                FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
                """
            )
            for table, vacuum, analyze in cursor.fetchall():
                if vacuum:
                    cursor.execute(f'VACUUM {"ANALYZE " if analyze else ""}"{table}"')
                    self.vacuums += 1
                elif analyze:
                    cursor.execute(f'ANALYZE "{table}"')

    def scheduler_round(self) -> None:
        """What jobs_scheduler does in a round (the sweeps with the round's clock: the sweeper
        otherwise reads the database's, which is not simulated)."""
        while len(services.schedules_fire_due()) >= settings.JOBS_SCHEDULES_BATCH:
            pass
        while len(services.jobs_dispatch_due()) >= settings.JOBS_DISPATCH_BATCH:
            pass
        now = timezone.now()
        services.jobs_sweep_lost(now=now)
        services.jobs_requeue_unclaimed(now=now)
        services.jobs_release_waiting_all()
        services.bulk_operations_dispatch()
        rollups.roll_up()
        heartbeats.prune_gone(now)
        # The scheduler steps the pruner every round (0.5 s): up to this tick's share of them.
        for _ in range(int(self.args.tick_seconds / settings.JOBS_DISPATCH_INTERVAL)):
            if not self.pruner.step():
                break

    def workers(self) -> None:
        """Take the broker's messages that are visible now, acknowledge them and run each one,
        until none is left (a run may release a held job, which sends a new message)."""
        while True:
            messages = list(
                OrmQ.objects.filter(lock__lte=timezone.now())
                .order_by("lock", "id")
                .values_list("id", "payload")[:1000]
            )
            if not messages:
                return
            OrmQ.objects.filter(id__in=[pk for pk, _ in messages]).delete()
            for _, payload in messages:
                task = SignedPackage.loads(payload)
                if task["func"] == BULK_ENTRY:
                    services.bulk_operation_run(task["args"][0])
                else:
                    self.run_job(task["args"][0])

    def outcome(self) -> tuple[str, bool] | None:
        """None for a success, else (error code, retryable) as the IMAP action raises them."""
        now = timezone.now()
        down = self.outage is not None and self.outage[0] <= now < self.outage[1]
        draw = self.rng.random()
        if draw < (self.args.outage_failure if down else self.args.timeout_rate):
            return TIMEOUT, True
        if draw > 1 - self.args.auth_rate:
            return AUTH_FAILED, False
        return None

    def run_job(self, job_id: str) -> None:
        """jobs.execution.worker.run_job without the handler: claim, outcome, release."""
        run = services.job_claim(job_id=job_id, worker=WORKER, claimed_at=timezone.now())
        if run is None:
            return  # held by its account's limit, or not queued any more: a no-op
        try:
            self.runs += 1
            error = self.outcome()
            if error is None:
                fetched = self.rng.randint(0, 40)
                result = {"folders": {"INBOX": {"fetched": fetched, "stored": fetched}}}
                services.job_succeed(job_id=job_id, attempt=run.number, result=result)
            else:
                self.failed_runs += 1
                code, retryable = error
                services.job_fail(
                    job_id=job_id,
                    attempt=run.number,
                    code=code,
                    detail=f"{code} (simulated by bench month)",
                    retryable=retryable,
                )
        finally:
            if run.limited:
                services.jobs_release_waiting(account_id=run.account_id, action=run.action)

    def tick(self, at: datetime) -> None:
        # Never backwards: a tick that took longer than its simulated length moves time on.
        self.traveller.move_to(max(at, timezone.now()))
        self.scheduler_round()
        self.workers()
        if self.args.autovacuum == "emulate":
            self.autovacuum()


# --- the reads timed at each day's end ---------------------------------------------------------


def _checked(response: Any, what: str) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"{what}: {response.status_code} {response.content[:300]!r}")
    return response


def time_reads(api: Client, admin: Client, user: Any, key: str, repeat: int) -> dict:
    admin.force_login(user)  # the session's age counts in simulated time
    biggest = (
        Job.objects.values("account_id").annotate(n=Count("id")).order_by("-n").first() or {}
    )["account_id"]
    headers = {"Authorization": f"Bearer {key}"}
    list_path = f"/api/accounts/{biggest}/jobs"
    search = {"status": ["succeeded", "failed"], "last_error_code": [TIMEOUT]}
    queue, dashboard = reverse("admin:jobs_job_changelist"), reverse("admin:jobs_job_dashboard")
    calls = {
        "api list": lambda: _checked(api.get(list_path, headers=headers), list_path),
        "api search": lambda: _checked(
            api.post(
                f"{list_path}/search", search, content_type="application/json", headers=headers
            ),
            "search",
        ),
        "admin queue": lambda: _checked(admin.get(queue), queue),
        "dashboard": lambda: _checked(admin.get(dashboard), dashboard),
    }
    out = {}
    for name, call in calls.items():
        samples = timed(call, repeat)
        out[name] = (statistics.median(samples), p95(samples))
    return out


def measure(day: Day, day_start: datetime) -> None:
    with connection.cursor() as cursor:
        for name, table in TABLES.items():
            cursor.execute(f"SELECT count(*), pg_total_relation_size(%s) FROM {table}", [table])
            day.rows[name], day.size[name] = cursor.fetchone()
    day.created = Job.objects.filter(created_at__gte=day_start).count()
    day.failed_kept = Job.objects.filter(status=JobStatus.FAILED).count()


# --- report ------------------------------------------------------------------------------------


def table(days: list[Day]) -> list[str]:
    head = ["day", "jobs created", "runs (failed)", "jobs", "attempts", "audit", "tasks"]
    head += ["failed kept", "vacuums", "MB (jobs / attempts / audit / tasks)"]
    head += [f"{name} ms med / p95" for name in READS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in days:
        cells = [
            str(d.number),
            f"{d.created:,}",
            f"{d.runs:,} ({d.failed_runs:,})",
            *(f"{d.rows[name]:,}" for name in TABLES),
            f"{d.failed_kept:,}",
            f"{d.vacuums:,}",
            f"{d.megabytes:,.1f} ("
            + " / ".join(f"{d.size[name] / 2**20:,.1f}" for name in TABLES)
            + ")",
            *(f"{d.reads[name][0]:.1f} / {d.reads[name][1]:.1f}" for name in READS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdicts(days: list[Day]) -> list[str]:
    week = max(1, min(7, len(days) // 2))
    first, last = days[:week], days[-week:]
    lines = [f"Growth over the last {week} days beside the first {week} (from empty):"]
    series: dict[str, list[float]] = {n: [d.rows[n] for d in days] for n in TABLES}
    series |= {f"MB {n}": [d.size[n] / 2**20 for d in days] for n in TABLES}
    series["MB"] = [d.megabytes for d in days]
    for name, values in series.items():
        grew_first = values[week - 1]
        grew_last = values[-1] - values[-week - 1] if len(values) > week else values[-1]
        ratio = grew_last / grew_first if grew_first else float("nan")
        level = "levelled off" if ratio < 0.2 else "still growing"
        lines.append(
            f"  {name:<9} first {grew_first:>12,.1f}  last {grew_last:>12,.1f}  "
            f"ratio {ratio:5.2f}  {level}"
        )
    lines.append(
        "  (audit events are kept 90 days, and while their job exists: within a month their "
        "table grows by design)"
    )
    # Against the first week (tables filling from empty) and against the week after it, once
    # the 7-day retention window is full: what "does not degrade" means in steady state.
    baselines = [(f"first {week} days (from empty)", first)]
    if len(days) >= 3 * week:
        baselines.append((f"days {week + 1}-{2 * week} (window full)", days[week : 2 * week]))
    for label, base in baselines:
        lines.append(f"Reads, median of the daily medians, last {week} days / {label}:")
        for name in READS:
            a = statistics.median(d.reads[name][0] for d in base)
            b = statistics.median(d.reads[name][0] for d in last)
            a95 = statistics.median(d.reads[name][1] for d in base)
            b95 = statistics.median(d.reads[name][1] for d in last)
            verdict = "no degradation" if b / a <= 1.5 else "DEGRADED"
            lines.append(
                f"  {name:<12} {a:7.1f} ms -> {b:7.1f} ms  ratio {b / a:4.2f}  "
                f"(p95 {a95:.1f} -> {b95:.1f} ms, {b95 / a95:.2f})  {verdict}"
            )
    return lines


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _panel(
    x0: float,
    y0: float,
    width: float,
    height: float,
    days: list[int],
    lines: list[tuple[str, list[float], str, str]],
    title: str,
    unit: str,
    right: tuple[str, list[float], str] | None = None,
) -> list[str]:
    """A line chart: `lines` (label, values, colour, dash) on the left axis, `right` (label,
    values, colour) on its own right axis."""
    out = [
        f'<text x="{x0}" y="{y0 - 12}" font-size="15" font-weight="bold">{title}</text>',
        f'<rect x="{x0}" y="{y0}" width="{width}" height="{height}" fill="none" stroke="#999"/>',
    ]
    span = max(1, days[-1] - days[0])

    def xs(day: int) -> float:
        return x0 + (day - days[0]) / span * width

    def axis(values: list[float], at_x: float, anchor: str, label: str) -> tuple[float, list[str]]:
        top = max(values) * 1.1 or 1.0
        marks = []
        for i in range(6):
            v = top * i / 5
            y = y0 + height - height * i / 5
            text = f"{v:,.0f}" if top >= 10 else f"{v:,.1f}"
            dx = -6 if anchor == "end" else 6
            marks.append(
                f'<text x="{at_x + dx}" y="{y + 4}" font-size="11" text-anchor="{anchor}">'
                f"{text}</text>"
            )
            if anchor == "end":
                marks.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + width}" y2="{y}" stroke="#eee"/>')
        marks.append(
            f'<text x="{at_x + (-50 if anchor == "end" else 50)}" y="{y0 + height / 2}" '
            f'font-size="12" text-anchor="middle" transform="rotate(-90 '
            f'{at_x + (-50 if anchor == "end" else 50)} {y0 + height / 2})">{label}</text>'
        )
        return top, marks

    top, marks = axis([v for _, values, _, _ in lines for v in values], x0, "end", unit)
    out += marks
    for day in days:
        if day == days[0] or day % 5 == 0 or day == days[-1]:
            out.append(
                f'<text x="{xs(day)}" y="{y0 + height + 16}" font-size="11" '
                f'text-anchor="middle">{day}</text>'
            )
    out.append(
        f'<text x="{x0 + width / 2}" y="{y0 + height + 32}" font-size="12" '
        f'text-anchor="middle">simulated day</text>'
    )

    def polyline(values: list[float], top: float, colour: str, dash: str) -> str:
        points = " ".join(
            f"{xs(day):.1f},{y0 + height - v / top * height:.1f}"
            for day, v in zip(days, values, strict=True)
        )
        return (
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/>'
        )

    legend = []
    for label, values, colour, dash in lines:
        out.append(polyline(values, top, colour, dash))
        legend.append((label, colour, dash))
    if right is not None:
        label, values, colour = right
        right_top, marks = axis(values, x0 + width, "start", label)
        out += marks
        out.append(polyline(values, right_top, colour, "6 3"))
        legend.append((f"{label} (right axis)", colour, "6 3"))
    for i, (label, colour, dash) in enumerate(legend):
        lx, ly = x0 + 10 + (i % 4) * 190, y0 + 16 + (i // 4) * 16
        out.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        out.append(f'<text x="{lx + 30}" y="{ly}" font-size="11">{label}</text>')
    return out


def svg(days: list[Day], scale: str) -> str:
    numbers = [d.number for d in days]
    width, height, left = 900.0, 260.0, 90.0
    rows = [
        (name, [float(d.rows[name]) for d in days], COLOURS[i], "") for i, name in enumerate(TABLES)
    ]
    reads = []
    for i, name in enumerate(READS):
        reads.append((f"{name} median", [d.reads[name][0] for d in days], COLOURS[i], ""))
        reads.append((f"{name} p95", [d.reads[name][1] for d in days], COLOURS[i], "2 3"))
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="1080" height="720" '
        'font-family="sans-serif">',
        '<rect width="100%" height="100%" fill="white"/>',
        *(
            f'<text x="{left}" y="{18 + 16 * i}" font-size="12">{line}</text>'
            for i, line in enumerate(textwrap.wrap(f"bench month: {scale}", 140))
        ),
        *_panel(
            left,
            70,
            width,
            height,
            numbers,
            rows,
            "Rows at the end of each day, and MB (tables with indexes)",
            "rows",
            right=("MB", [d.megabytes for d in days], COLOURS[4]),
        ),
        *_panel(
            left,
            420,
            width,
            height,
            numbers,
            reads,
            "Reads at the end of each day (warm, in-process): median and p95",
            "ms",
        ),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


# --- the month ---------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench month")
    parser.add_argument("--accounts", type=int, default=16, help="mailboxes (accounts)")
    parser.add_argument("--interval-minutes", type=float, default=30.0, help="sync interval")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--out", default="var/bench", help="directory for month.svg, month.md")
    parser.add_argument("--tick-seconds", type=float, default=300.0, help="simulated round")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per read and day")
    parser.add_argument("--timeout-rate", type=float, default=0.03, help="retried failures")
    parser.add_argument("--auth-rate", type=float, default=0.002, help="terminal failures")
    parser.add_argument("--incident-day", type=int, default=None, help="default: the middle")
    parser.add_argument("--outage-failure", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--autovacuum",
        choices=["emulate", "server"],
        default="emulate",
        help="apply autovacuum's default rule on the simulated clock, or leave it to the server",
    )
    args = parser.parse_args(argv)
    if connection.vendor != "postgresql":
        print("bench month needs PostgreSQL: DATABASE_URL=postgres://.../bench_month")
        return 2
    if not str(connection.settings_dict["NAME"]).startswith("bench_month"):
        print(
            "bench month drops and creates the database it is given: DATABASE_URL must name "
            f"one of its own, bench_month..., not {connection.settings_dict['NAME']!r}"
        )
        return 2
    incident_day = args.incident_day or max(1, (args.days + 1) // 2)
    interval = int(args.interval_minutes * 60)
    per_day = args.accounts * 86_400 / interval
    scale = (
        f"{args.accounts:,} mailboxes synced every {args.interval_minutes:g} min "
        f"(≈ {per_day:,.0f} jobs a day), {args.days} days, ticks of {args.tick_seconds:g} s, "
        f"{args.timeout_rate:.1%} provider_timeout (retried), {args.auth_rate:.1%} "
        f"provider_auth_failed (terminal), outage on day {incident_day} 09:00-11:00"
    )
    print(f"scale: {scale}", flush=True)
    started = time.perf_counter()
    # The database is created first: DATABASE_URL may name one that does not exist yet.
    print(f"fresh database {fresh_database()!r} migrated", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        server_autovacuum = cursor.fetchone()[0]
    print(
        f"maintenance: --autovacuum {args.autovacuum} (the server's autovacuum is "
        f"{server_autovacuum})",
        flush=True,
    )

    # The month ends at the start of today (UTC): simulated time stays behind the database's.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - args.days * DAY
    ticks = int(86_400 / args.tick_seconds)
    days: list[Day] = []
    with time_machine.travel(start, tick=True) as traveller:
        month = Month(args, traveller)
        actor = Actor.system("bench-month")
        _, key = api_key_create(account=None, actor=actor, name="bench month operator")
        user = get_user_model().objects.create_superuser("bench-month", "bench@example.test", "x")
        api, admin = Client(HTTP_HOST="localhost"), Client(SERVER_NAME="localhost")
        headers = {"Authorization": f"Bearer {key}"}
        with override_settings(JOBS_DEFAULT_SYNC_INTERVAL=interval):
            for n in range(args.accounts):
                body = {
                    "name": f"bench-month-{n:04d}",
                    "email": f"mailbox{n}@example.test",
                    "imap": {
                        "host": "imap.example.test",
                        "port": 993,
                        "security": "tls",
                        "username": f"mailbox{n}",
                        "password": "not-a-real-password",
                        "folders": ["INBOX"],
                    },
                }
                response = api.post(
                    "/api/accounts", body, content_type="application/json", headers=headers
                )
                if response.status_code != 201:
                    raise RuntimeError(f"POST /api/accounts: {response.status_code}")
        print(f"{args.accounts:,} accounts created through the API", flush=True)
        for number in range(1, args.days + 1):
            day_start = start + (number - 1) * DAY
            day = Day(number)
            runs, failed, vacuums = month.runs, month.failed_runs, month.vacuums
            began = time.perf_counter()
            if number == incident_day:
                month.outage = (day_start + timedelta(hours=9), day_start + timedelta(hours=11))
            recovery = day_start + timedelta(hours=11, minutes=30)
            for k in range(ticks):
                at = day_start + timedelta(seconds=k * args.tick_seconds)
                month.tick(at)
                if number == incident_day and not month.bulk and at >= recovery:
                    response = api.post(
                        "/api/bulk-operations",
                        {
                            "command": "retry",
                            "filter": {"status": ["failed"], "last_error_code": [TIMEOUT]},
                            "account_id": None,
                            "note": "Provider outage over: retry what it failed.",
                        },
                        content_type="application/json",
                        headers=headers,
                    )
                    if response.status_code != 202:
                        raise RuntimeError(f"bulk: {response.status_code} {response.content!r}")
                    operation = response.json()
                    month.bulk.append(operation["id"])
                    print(
                        f"  day {number} 11:30: bulk retry {operation['id']} of "
                        f"{operation['progress']['matched']:,} failed provider_timeout jobs",
                        flush=True,
                    )
            day.wall = time.perf_counter() - began
            day.runs, day.failed_runs = month.runs - runs, month.failed_runs - failed
            day.vacuums = month.vacuums - vacuums
            traveller.move_to(day_start + DAY - timedelta(seconds=1))
            measure(day, day_start)
            day.reads = time_reads(api, admin, user, key, args.repeat)
            days.append(day)
            print(
                f"  day {number:>2}: {day.created:,} jobs created, {day.runs:,} runs "
                f"({day.failed_runs:,} failed); rows jobs {day.rows['jobs']:,} attempts "
                f"{day.rows['attempts']:,} audit {day.rows['audit']:,} tasks "
                f"{day.rows['tasks']:,}; {day.megabytes:,.1f} MB; driven in {day.wall:.1f} s; "
                + ", ".join(f"{n} {m:.1f}/{q:.1f} ms" for n, (m, q) in day.reads.items()),
                flush=True,
            )
        for operation_id in month.bulk:
            shown = api.get(f"/api/bulk-operations/{operation_id}", headers=headers).json()
            print(f"bulk operation {operation_id}: {shown['status']}, {shown['progress']}")

    lines = table(days)
    verdict = verdicts(days)
    elapsed = time.perf_counter() - started
    jobs_a_day = statistics.mean(d.created for d in days)
    summary = (
        f"{sum(d.created for d in days):,} jobs in {args.days} days ({jobs_a_day:,.0f} a day), "
        f"{sum(d.runs for d in days):,} runs, driven in {elapsed:,.0f} s"
    )
    print()
    print("\n".join(lines))
    print()
    print(summary)
    print("\n".join(verdict))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "month.svg").write_text(svg(days, scale), encoding="utf-8")
    (out / "month.md").write_text(
        f"# bench month\n\n{scale}\n\n{summary}\n\n" + "\n".join(lines) + "\n\n```\n"
        f"{chr(10).join(verdict)}\n```\n",
        encoding="utf-8",
    )
    print(f"\nchart: {(out / 'month.svg').resolve()}\ntable: {(out / 'month.md').resolve()}")
    return 0
