from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Register the built-in actions, task kinds and provider event types.
        from jobs.actions import builtin  # noqa: F401
