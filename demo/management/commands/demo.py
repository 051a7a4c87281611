"""The whole demo in one command: database, demo data, a local IMAP server with demo mailboxes,
the web console, the workers and the scheduler. Ctrl-C stops everything. Demo code, apart from
the product."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from accounts.models import Account
from accounts.services import account_create, account_update
from core.actors import Actor
from demo.management.commands.seed_demo import seeded_lost_runs_note
from jobs.services import provider_event_ingest, task_create

try:
    from demo.mailservers import DemoMailServers, make_message, start_demo_mail_servers
except ModuleNotFoundError as exc:
    # pymap (with proxy-protocol and pysasl) is the `demo` extra, which a deployment does not
    # install: say so when the demo starts, rather than fail on import with a traceback.
    if (exc.name or "").partition(".")[0] not in {"pymap", "proxyprotocol", "pysasl"}:
        raise
    MAIL_SERVERS_MISSING: ModuleNotFoundError | None = exc
else:
    MAIL_SERVERS_MISSING = None

DEMO = Actor.system("demo")
# New mail arrives in the healthy demo mailbox this often, announced by a provider event.
MAIL_EVERY_SECONDS = 30


class Command(BaseCommand):
    help = "Migrate, load demo data, start demo mailboxes, then run console, workers, scheduler."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Where the console listens.")
        parser.add_argument("--no-serve", action="store_true", help="Prepare the data and exit.")

    def handle(self, *args: Any, addr: str, no_serve: bool, **options: Any) -> None:
        if MAIL_SERVERS_MISSING is not None and not no_serve:
            raise CommandError(
                f"The demo needs pymap, which only the `demo` extra installs "
                f"({MAIL_SERVERS_MISSING}). Install it with pip install '.[demo]', or run "
                "python3 dev.py demo, which does."
            ) from MAIL_SERVERS_MISSING
        # A SIGTERM (a process manager, `kill`) stops everything as Ctrl-C does.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo")
        if no_serve:
            return
        mail = start_demo_mail_servers()
        healthy = self.connect_demo_mailboxes(mail)
        host = addr if "://" in addr else f"http://{addr}"
        self.stdout.write(
            self.style.SUCCESS(
                f"\nJobs console: {host}/admin/\n"
                "  operator / operator   (all permissions)\n"
                "  viewer   / operator   (read-only operator)\n"
                f"API docs:     {host}/api/docs/\n"
                f"Demo IMAP:    127.0.0.1:{mail.imap_port} ({mail.user} / {mail.password})\n"
                f"Database:     {settings.DATABASES['default']['NAME']}\n"
                "The 'Demo mailbox (...)' accounts sync for real: one succeeds, the others fail\n"
                "with provider_auth_failed, provider_unavailable and provider_timeout. Fix the\n"
                "wrong password on its account page, then retry its failed job.\n"
                f"{seeded_lost_runs_note()}"
                "Ctrl-C stops everything.\n"
            )
        )
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        # Own sessions: Ctrl-C reaches this process only, which then stops each child in the way
        # it expects (a SIGINT to qcluster's whole group would strand its supervisor).
        processes = {
            name: subprocess.Popen([*manage, *command], start_new_session=True)
            for name, command in {
                "web": ["runserver", addr, "--noreload"],
                "workers": ["qcluster"],
                "scheduler": ["jobs_scheduler"],
            }.items()
        }
        next_mail, n = time.monotonic() + MAIL_EVERY_SECONDS, 0
        try:
            while all(process.poll() is None for process in processes.values()):
                if time.monotonic() >= next_mail:
                    n += 1
                    self.deliver_mail(mail, healthy, n)
                    next_mail += MAIL_EVERY_SECONDS
                time.sleep(0.5)
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with {process.returncode}; stopping.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping ...")
        finally:
            self.stop(processes)
            mail.stop()

    def connect_demo_mailboxes(self, mail: DemoMailServers) -> Account:
        """Create the demo mailbox accounts once; on later starts only point them at this run's
        ports (an operator's password fix is kept). Queue a sync of each."""
        accounts = []
        for spec in mail.account_specs():
            account = Account.objects.filter(name=spec["name"]).first()
            if account is None:
                account = account_create(actor=DEMO, **spec)
            else:
                where = {key: spec["imap"][key] for key in ("host", "port", "security")}
                account = account_update(account_id=account.pk, actor=DEMO, imap=where)
            task_create(account=account, kind="mailbox_sync", params={}, actor=DEMO)
            accounts.append(account)
        return accounts[0]

    def deliver_mail(self, mail: DemoMailServers, account: Account, n: int) -> None:
        """New mail in the healthy mailbox, and the provider event a real provider would push."""
        close_old_connections()
        mail.mail.append(mail.user, make_message(5000 + n, subject=f"Live demo mail #{n}"))
        provider_event_ingest(
            account=account,
            provider="imap",
            type="message.created",
            external_id=f"demo-{time.time_ns()}",
            payload={},
            actor=DEMO,
        )

    def stop(self, processes: dict[str, subprocess.Popen]) -> None:
        # SIGTERM to each main process only: django-q2's cluster shuts its workers down itself.
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
