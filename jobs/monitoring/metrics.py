"""`/metrics`: the dashboard's figures in Prometheus' text format, for machines.

Protected: an operator API key (`Authorization: Bearer jc_...`, read-only keys too), or a
request from an address listed in JOBS_METRICS_ALLOWED_IPS (the socket's peer, REMOTE_ADDR: a
proxy in front must be the one listed, or pass the key). Anything else is answered in plain
text: 401 without a valid key, 403 for a key of one account (it sees no account's figures but
its own, and these are every account's). Nothing here is per account: no tenant appears in a
label.

Every figure is read on each scrape from what the dashboard reads: the depth from the status
indexes, the counters and the latency histogram from the rollups' running totals (they grow as
the scheduler rolls closed minutes up, so they lag by a minute or so), the processes from their
heartbeats. The process metrics are those of the web process that answers.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from accounts import apikeys
from jobs import reports
from jobs.monitoring import heartbeats, rollups

# The classic text format, which every Prometheus version reads (the metric names here are all
# plain ASCII, so the text is the same in the newer format).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class JobsCollector(Collector):
    """The jobs console's figures, read when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        depth = reports.depth(now=now)
        gauge = GaugeMetricFamily(
            "jobs_queue_depth", "Jobs per unfinished status, every account.", labels=["status"]
        )
        for status, n in depth.by_status.items():
            gauge.add_metric([status], n)
        yield gauge
        age = depth.oldest_queued_age(now)
        yield GaugeMetricFamily(
            "jobs_oldest_queued_age_seconds",
            "Seconds the oldest queued job has waited since it was due (0: none queued).",
            value=age or 0.0,
        )

        totals = rollups.totals()
        runs = CounterMetricFamily(
            "jobs_runs",
            "Runs finished, by action and outcome (succeeded, failed, retried), as rolled up.",
            labels=["action", "outcome"],
        )
        started = CounterMetricFamily(
            "jobs_runs_started", "Runs started (claimed by a worker), by action.", labels=["action"]
        )
        errors = CounterMetricFamily(
            "jobs_run_errors",
            "Failed runs (retried or not, lost included), by action and error code.",
            labels=["action", "error_code"],
        )
        latency = HistogramMetricFamily(
            "jobs_start_latency_seconds",
            "Seconds from a job's creation to the start of its first run, by action.",
            labels=["action"],
        )
        for action, tally in totals.items():
            started.add_metric([action], tally.started)
            for outcome, n in (
                ("succeeded", tally.succeeded),
                ("failed", tally.failed),
                ("retried", tally.retried),
            ):
                runs.add_metric([action, outcome], n)
            for code, n in sorted(tally.errors.items()):
                errors.add_metric([action, code], n)
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip(
                [*map(str, rollups.LATENCY_BOUNDS), "+Inf"], tally.latency_counts, strict=False
            ):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric([action], buckets, tally.latency_sum_ms / 1000)
        yield from (runs, started, errors, latency)
        cursor = rollups.rolled_up_through()
        yield GaugeMetricFamily(
            "jobs_rollup_through_timestamp_seconds",
            "The counters include every run before this time (Unix seconds; 0: never).",
            value=cursor.timestamp() if cursor else 0.0,
        )

        procs = heartbeats.processes()
        yield GaugeMetricFamily(
            "jobs_clusters_alive",
            "django-q2 clusters with a live worker.",
            value=procs.clusters_alive,
        )
        yield GaugeMetricFamily(
            "jobs_workers_alive",
            "Worker processes that beat within the grace.",
            value=procs.workers_alive,
        )
        yield GaugeMetricFamily(
            "jobs_schedulers_alive",
            "Schedulers that beat within the grace.",
            value=procs.schedulers_alive,
        )
        last = procs.scheduler_last_beat
        yield GaugeMetricFamily(
            "jobs_scheduler_last_heartbeat_timestamp_seconds",
            "When a scheduler last beat (Unix seconds; 0: none in 24 hours).",
            value=last.timestamp() if last else 0.0,
        )


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector())
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


_REGISTRY = _registry()


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may read the metrics; else the plain-text answer."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw_key = header.partition(" ")
    if scheme.lower() == "bearer" and raw_key.strip():
        key = apikeys.authenticate(raw_key.strip())
        if key is None:
            return _plain("Invalid API key.\n", 401)
        if key.account_id is not None:
            return _plain("The metrics are for operator keys; this key is an account's.\n", 403)
        return None
    if request.META.get("REMOTE_ADDR", "") in settings.JOBS_METRICS_ALLOWED_IPS:
        return None
    return _plain("Authentication required: Authorization: Bearer <operator API key>.\n", 401)


def _plain(text: str, status: int) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    response["Cache-Control"] = "no-store"
    return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: the Prometheus text exposition (version 0.0.4)."""
    if request.method not in ("GET", "HEAD"):
        response = _plain(f"Method {request.method} not allowed.\n", 405)
        response["Allow"] = "GET, HEAD"
        return response
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    response = HttpResponse(generate_latest(_REGISTRY), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
