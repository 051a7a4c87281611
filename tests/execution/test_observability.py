"""Observability with real processes: clusters and schedulers heart-beat, `/metrics` (parsed
with prometheus-client's own parser) counts the runs of a real cluster, the workers page shows
a killed cluster as gone, and `manage.py jobs_health` says so for each process type.
(The web process's /healthz under gunicorn is tests/test_serving.py.)"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.apikeys import api_key_create
from core.actors import Actor
from jobs import services
from jobs.execution.actions.registry import JobSpec
from jobs.models import Job, ProcessHeartbeat, ProcessKind
from jobs.monitoring import rollups
from jobs.states import JobStatus
from tests.execution.conftest import ROOT, Execution

pytestmark = pytest.mark.slow

ACTOR = Actor.system("test")
BEATS = {"JOBS_PROCESS_HEARTBEAT_SECONDS": "0.3", "JOBS_PROCESS_GRACE_SECONDS": "2"}


def health(execution: Execution, *args: str) -> subprocess.CompletedProcess:
    env = {**execution.env, **BEATS}
    return subprocess.run(
        [sys.executable, "manage.py", "jobs_health", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def scrape(client: Client, key: str) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def alive(kind: ProcessKind) -> int:
    cutoff = timezone.now() - timedelta(seconds=2)
    return ProcessHeartbeat.objects.filter(
        kind=kind, stopped_at__isnull=True, beat_at__gte=cutoff
    ).count()


def test_heartbeats_metrics_workers_page_and_health(
    execution: Execution, account, admin_client, settings
) -> None:
    settings.JOBS_PROCESS_GRACE_SECONDS = 2
    key = api_key_create(account=None, actor=ACTOR, name="prometheus", read_only=True)[1]
    client = Client()
    before = scrape(client, key)
    assert before[("jobs_workers_alive", ())] == 0
    assert ("process_cpu_seconds_total", ()) in before  # the process metrics are there too
    assert health(execution).returncode == 1

    cluster = execution.start("qcluster", "qcluster", JOBS_WORKERS="2", **BEATS)
    scheduler = execution.start("scheduler", "jobs_scheduler", **BEATS)
    execution.wait(
        lambda: alive(ProcessKind.WORKER) == 2 and alive(ProcessKind.SCHEDULER) == 1,
        timeout=60,
        what="two workers and a scheduler to beat",
    )
    for process in ("all", "worker", "scheduler"):
        result = health(execution, "--process", process)
        assert result.returncode == 0, result.stderr
    assert health(execution, "--this-host").returncode == 0

    specs = [JobSpec("noop", {}) for _ in range(6)] + [JobSpec("test_crash", {})]
    ids = [job.pk for job in services.jobs_create(account=account, specs=specs, actor=ACTOR)]
    execution.wait(
        lambda: Job.objects.filter(pk__in=ids, status__in=["succeeded", "failed"]).count() == 7,
        timeout=60,
        what="the jobs to finish",
    )
    # The workers count their runs in memory and write them with their next beat.
    execution.wait(
        lambda: sum(ProcessHeartbeat.objects.values_list("jobs_done", flat=True)) == 7,
        timeout=30,
        what="the workers' beats to carry their runs",
    )
    assert sum(ProcessHeartbeat.objects.values_list("jobs_failed", flat=True)) == 1
    # The scheduler rolls a minute up once it has closed; do what it will do then, now.
    rollups.roll_up(now=timezone.now() + timedelta(minutes=2))
    after = scrape(client, key)
    succeeded = (("action", "noop"), ("outcome", "succeeded"))
    assert before.get(("jobs_runs_total", succeeded), 0) == 0
    assert after[("jobs_runs_total", succeeded)] == 6
    assert after[("jobs_runs_started_total", (("action", "noop"),))] == 6
    assert (
        after[
            ("jobs_run_errors_total", (("action", "test_crash"), ("error_code", "internal_error")))
        ]
        == 1
    )
    assert after[("jobs_start_latency_seconds_count", (("action", "noop"),))] == 6
    assert after[("jobs_workers_alive", ())] == 2 and after[("jobs_clusters_alive", ())] == 1
    assert after[("jobs_schedulers_alive", ())] == 1
    assert after[("jobs_scheduler_last_heartbeat_timestamp_seconds", ())] > 0
    assert after[("jobs_queue_depth", (("status", "failed"),))] == 1

    page = admin_client.get(reverse("admin:jobs_job_workers") + "?_live=1").content.decode()
    assert page.count('data-state="alive"') == 4  # the cluster, its two workers, the scheduler

    cluster.kill()  # SIGKILL to the whole tree: nobody says goodbye
    execution.wait(
        lambda: alive(ProcessKind.WORKER) == 0, timeout=30, what="the workers' beats to age"
    )
    page = admin_client.get(reverse("admin:jobs_job_workers")).content.decode()
    assert 'class="module cluster"' in page and page.count('data-state="gone"') == 3
    assert 'id="clusters-alive">0<' in page
    assert health(execution, "--process", "worker").returncode == 1
    assert health(execution, "--process", "scheduler").returncode == 0
    assert "no worker process" in health(execution).stderr

    # A cluster stopped cleanly (SIGTERM to its main process): its worker says so on its way out.
    second = execution.start("qcluster", "qcluster", JOBS_WORKERS="1", **BEATS)
    execution.wait(lambda: alive(ProcessKind.WORKER) == 1, timeout=60, what="a new worker")
    assert health(execution, "--process", "worker").returncode == 0
    second.stop()
    execution.wait(
        lambda: ProcessHeartbeat.objects.filter(stopped_at__isnull=False).count() == 1,
        timeout=30,
        what="the stopped worker to record its stop",
    )
    page = admin_client.get(reverse("admin:jobs_job_workers")).content.decode()
    assert page.count('data-state="stopped"') == 2  # that cluster and its worker
    assert health(execution, "--process", "worker").returncode == 1

    scheduler.stop()  # SIGTERM: a clean stop, recorded as such
    row = ProcessHeartbeat.objects.get(kind=ProcessKind.SCHEDULER)
    assert row.stopped_at is not None
    assert health(execution, "--process", "scheduler").returncode == 1
    page = admin_client.get(reverse("admin:jobs_job_workers")).content.decode()
    assert 'class="scheduler" data-scheduler="' in page and 'data-state="stopped"' in page
    assert scrape(client, key)[("jobs_schedulers_alive", ())] == 0
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 0
