from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The neutral home every app may import: errors, actors, ids, the audit trail, and the
    plumbing the API and the admin share. It imports no other app of the project."""

    name = "core"
    verbose_name = "Audit"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from core.jsonb import register_sqlite_function
        from core.unreadable import load_unreadable_timestamps

        # A row holding a timestamp Python cannot read must not fail every query that holds it.
        connection_created.connect(load_unreadable_timestamps, dispatch_uid="core.unreadable")
        # JSON containment (jsonb's @>) on SQLite, for the payload filter.
        connection_created.connect(register_sqlite_function, dispatch_uid="core.jsonb")
