"""Tasks count their jobs by status (jobs.states.TASK_COUNTER); existing tasks are counted
from their jobs here, one grouped query per batch of tasks."""

from django.db import migrations, models
from django.db.models import Count

STATUSES = ("scheduled", "queued", "running", "succeeded", "failed", "stalled", "resolved")
BATCH = 1000


def count_jobs(apps, schema_editor):
    Task = apps.get_model("jobs", "Task")
    Job = apps.get_model("jobs", "Job")
    db = schema_editor.connection.alias
    ids = list(Task.objects.using(db).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        counts = {pk: {} for pk in batch}
        rows = (
            Job.objects.using(db)
            .filter(task_id__in=batch, status__in=STATUSES)
            .values_list("task_id", "status")
            .annotate(n=Count("*"))
            .order_by()
        )
        for task_id, status, n in rows:
            counts[task_id][status] = n
        for pk, found in counts.items():
            if found:
                Task.objects.using(db).filter(pk=pk).update(
                    **{f"jobs_{status}": found.get(status, 0) for status in STATUSES}
                )


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0007_fairness_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="jobs_failed",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="task",
            name="jobs_queued",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="task",
            name="jobs_resolved",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="task",
            name="jobs_running",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="task",
            name="jobs_scheduled",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="task",
            name="jobs_stalled",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="task",
            name="jobs_succeeded",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.RunPython(count_jobs, migrations.RunPython.noop, elidable=True),
    ]
