"""`manage.py create_api_key --account acc_... [--read-only] [--name NAME]` or `--operator`:
creates an API key and prints it. The key is shown this once; only its hash is stored."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.apikeys import api_key_create
from accounts.models import Account
from core.actors import Actor


class Command(BaseCommand):
    help = "Create an API key for one account (--account) or for operators (--operator)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--account", metavar="ACCOUNT_ID", help="The account the key serves.")
        scope.add_argument("--operator", action="store_true", help="A key that sees every account.")
        parser.add_argument("--read-only", action="store_true", help="Refuse every write.")
        parser.add_argument("--name", default="", help="A label for the key (who holds it).")

    def handle(
        self,
        *args: Any,
        account: str | None = None,
        operator: bool = False,
        read_only: bool = False,
        name: str = "",
        **options: Any,
    ) -> None:
        target = None
        if account:
            target = Account.objects.filter(pk=account).first()
            if target is None:
                raise CommandError(f"Account {account} not found.")
        key, raw_key = api_key_create(
            account=target, actor=Actor.system("cli"), name=name, read_only=read_only
        )
        scope = f"account {target.pk}" if target else "operator (all accounts)"
        mode = "read-only" if read_only else "read-write"
        self.stderr.write(
            f"Created API key {key.prefix} for {scope}, {mode}. It is shown once; store it now."
        )
        # The key alone on stdout, so `KEY=$(manage.py create_api_key ...)` works.
        self.stdout.write(raw_key)
