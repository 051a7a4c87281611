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

        # The system checks (jobs.W001: a PostgreSQL search index missing).
        from jobs import checks  # noqa: F401
