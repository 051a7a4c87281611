"""Observability: what the processes and the queue are doing, for the operators' console, for
`/metrics` and for `manage.py jobs_health`.

- heartbeats: each worker and scheduler process writes its own row (ProcessHeartbeat) on a
  timer; the workers page and the health check read them;
- rollups: the scheduler rolls the audit trail up into per-minute and per-hour rows
  (JobRollup), from which queue health is read without scanning the job table;
- triage: on a large table the scheduler counts the jobs waiting for an operator per account,
  action and error code (TriageCount), for the triage page and /metrics;
- metrics: the Prometheus exposition of the same figures.

Nothing here writes a job: it reads jobs and audit events, and writes its own tables.
"""
