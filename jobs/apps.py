import importlib

from django.apps import AppConfig
from django.conf import settings


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Register the built-in actions, task kinds and provider event types, then any module
        # the deployment adds (JOBS_EXTRA_ACTION_MODULES).
        from jobs.execution.actions import builtin  # noqa: F401

        for module in settings.JOBS_EXTRA_ACTION_MODULES:
            importlib.import_module(module)

        # django-q2's process queues: a worker killed while it waits must not wedge its cluster.
        from jobs.execution import queues

        queues.install()

        # Each django-q2 worker process says it is alive from the moment it is spawned.
        from django_q.signals import post_spawn

        from jobs.monitoring import heartbeats

        post_spawn.connect(heartbeats.start_worker_beat, dispatch_uid="jobs-process-heartbeat")
        # An account that gets IMAP settings gets its default sync schedule (accounts sends
        # the signal: it imports nothing of jobs).
        from accounts.signals import imap_configured
        from jobs.services.schedules import on_imap_configured

        imap_configured.connect(on_imap_configured, dispatch_uid="jobs.default_sync_schedule")
        # The system checks (jobs.W001: a PostgreSQL search index missing).
        from jobs import checks  # noqa: F401
