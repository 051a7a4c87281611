"""The index behind jobs.execution.broker.OrderedORM's read: the next waiting message of a queue, in
order of visibility, is one probe instead of a scan of django-q2's queue table. It comes after
django-q2's last migration of that table (0019, django-q2 1.10): on SQLite, altering a table
rebuilds it with the indexes Django knows of, which this one is not."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunSQL(
            'CREATE INDEX IF NOT EXISTS jobs_ormq_line ON django_q_ormq ("key", "lock", "id")',
            reverse_sql="DROP INDEX IF EXISTS jobs_ormq_line",
        )
    ]
