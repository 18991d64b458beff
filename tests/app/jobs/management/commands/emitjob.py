"""manage.py emitjob JOB_ID [--status S] [--events N]: emits what AWX emits
while a job runs, through wsgw.django.emit_channel_notification (clients/
python, on PYTHONPATH): the job's status change to jobs-status_changed and N
job events to job_events-<id>, as AWX's callers built them (a model's
datetime and a Decimal in the payload: DjangoJSONEncoder's work; group_name
left to the helper, except for the status change, where AWX's caller set it).

Owns: nothing but this demonstration of the helper. Must not: catch the
helper's errors (the command exits non-zero with them).
"""
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job


class Command(BaseCommand):
    help = "Emit a job's status change and events through wsgw.django."

    def add_arguments(self, parser):
        parser.add_argument("job", type=int)
        parser.add_argument("--status", default="running")
        parser.add_argument("--events", type=int, default=0)

    def handle(self, job, status, events, **options):
        from wsgw.django import emit_channel_notification

        row = Job.objects.filter(pk=job).first()
        if row is None:
            raise CommandError(f"no job {job}")
        emit_channel_notification("jobs-status_changed", {
            "group_name": "jobs", "unified_job_id": row.pk, "status": status,
            "name": row.name, "created": row.created, "elapsed": Decimal("1.50")})
        for counter in range(1, events + 1):
            emit_channel_notification(f"job_events-{row.pk}", {
                "job": row.pk, "counter": counter, "event": "runner_on_ok",
                "stdout": f"ok: [host{counter}] \u2713"})
        self.stdout.write(f"emitted {1 + events}")
