# The audit trail and idempotency records moved here from the jobs app, which created their
# tables: this migration only takes them over in Django's state (the tables keep their names),
# and moves their content types so that permissions granted on them are kept.

import django.utils.timezone
from django.db import migrations, models


def move_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in ("auditevent", "idempotencyrecord"):
        if not ContentType.objects.using(db).filter(app_label="core", model=model).exists():
            ContentType.objects.using(db).filter(app_label="jobs", model=model).update(
                app_label="core"
            )


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("jobs", "0002_ormq_line_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("actor_type", models.CharField(choices=[("user", "User"), ("api_key", "API key"), ("system", "System")], max_length=10)),
                        ("actor", models.CharField(max_length=200)),
                        ("command", models.CharField(max_length=40)),
                        ("account_id", models.CharField(blank=True, max_length=32)),
                        ("job_id", models.CharField(blank=True, max_length=32)),
                        ("task_id", models.CharField(blank=True, max_length=32)),
                        ("from_status", models.CharField(blank=True, max_length=16)),
                        ("to_status", models.CharField(blank=True, max_length=16)),
                        ("reason", models.TextField(blank=True)),
                        ("data", models.JSONField(blank=True, default=dict)),
                    ],
                    options={
                        "db_table": "jobs_auditevent",
                        "ordering": ["-id"],
                        "indexes": [
                            models.Index(fields=["job_id", "-id"], name="audit_job"),
                            models.Index(fields=["account_id", "-id"], name="audit_account"),
                            models.Index(fields=["command", "-id"], name="audit_command"),
                            models.Index(fields=["actor", "-id"], name="audit_actor"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("principal", models.CharField(max_length=200)),
                        ("key", models.CharField(max_length=255)),
                        ("method", models.CharField(max_length=10)),
                        ("path", models.CharField(max_length=500)),
                        ("body_hash", models.CharField(max_length=64)),
                        ("status_code", models.PositiveSmallIntegerField(null=True)),
                        ("response_body", models.JSONField(null=True)),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ],
                    options={
                        "db_table": "jobs_idempotencyrecord",
                        "constraints": [models.UniqueConstraint(fields=("principal", "key"), name="idempotency_unique")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, migrations.RunPython.noop),
    ]
