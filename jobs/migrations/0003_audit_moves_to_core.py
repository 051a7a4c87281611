# AuditEvent and IdempotencyRecord now belong to the core app (core 0001 takes them over);
# their tables stay as they are.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0002_ormq_line_index"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="AuditEvent"),
                migrations.DeleteModel(name="IdempotencyRecord"),
            ],
            database_operations=[],
        ),
    ]
