"""The whole demo in one command: database, demo data, web console, workers and scheduler.
Ctrl-C stops everything."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, load demo data, then run the console, the workers and the scheduler."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Where the console listens.")
        parser.add_argument("--no-serve", action="store_true", help="Prepare the data and exit.")

    def handle(self, *args, addr: str, no_serve: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo")
        host = addr if "://" in addr else f"http://{addr}"
        self.stdout.write(
            self.style.SUCCESS(
                f"\nJobs console: {host}/admin/\n"
                "  operator / operator   (all permissions)\n"
                "  viewer   / operator   (read-only operator)\n"
                f"API docs:     {host}/api/docs/\n"
                f"Database:     {settings.DATABASES['default']['NAME']}\n"
                "Ctrl-C stops everything.\n"
            )
        )
        if no_serve:
            return
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        processes = {
            "web": subprocess.Popen([*manage, "runserver", addr, "--noreload"]),
            "workers": subprocess.Popen([*manage, "qcluster"]),
            "scheduler": subprocess.Popen([*manage, "jobs_scheduler"]),
        }
        try:
            while True:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping.")
                        return
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping ...")
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 15
            for process in processes.values():
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
