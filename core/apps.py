from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The neutral home every app may import: errors, actors, ids, the audit trail, and the
    plumbing the API and the admin share. It imports no other app of the project."""

    name = "core"
    verbose_name = "Audit"
