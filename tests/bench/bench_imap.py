"""IMAP sync throughput: `python3 dev.py bench imap [--messages 10000] [--rounds 3]`.

A pymap server in its own process serves one mailbox of N generated messages. Each round times
  - bare: a bare imaplib loop (connect, LOGIN, EXAMINE, UID SEARCH, UID FETCH of the same envelope
    items in the same batches), which parses and stores nothing: the ceiling;
  - sync: jobs.execution.mailsync.sync_account for a fresh account, parsing and storing every
    envelope into MailboxMessage rows of a throwaway test database;
and reports messages/s for both and their ratio (target: sync >= 0.7x bare). Best of the rounds.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = 0.7


def start_server(messages: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.mailservers", "--messages", str(messages)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"the pymap server did not start: {line!r}")
    return proc, int(line.split()[1])


def bare_loop(port: int, user: str, password: str, batch_size: int) -> int:
    """Fetch every envelope as the sync does, and do nothing with them. Returns the count."""
    from jobs.execution.mailsync.envelope import FETCH_ITEMS

    conn = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    conn.login(user, password)
    conn.select('"INBOX"', readonly=True)
    _, data = conn.uid("SEARCH", "UID 1:*")
    uids = [int(u) for u in data[0].split()]
    fetched = 0
    for i in range(0, len(uids), batch_size):
        chunk = uids[i : i + batch_size]
        _, data = conn.uid("FETCH", f"{chunk[0]}:{chunk[-1]}", FETCH_ITEMS)
        fetched += sum(1 for item in data if isinstance(item, tuple))
    conn.logout()
    return fetched


def measure(fn):
    """(messages, messages per second, client CPU ms per 1000 messages) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count, count / wall, cpu * 1e6 / max(count, 1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench imap", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsconsole.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    from accounts.models import MailboxMessage
    from accounts.services import account_create
    from core.actors import Actor
    from demo.mailservers import DEMO_PASSWORD, DEMO_USER
    from jobs.execution.mailsync import sync_account

    batch_size = int(getattr(settings, "JOBS_IMAP_BATCH_SIZE", 500))
    print(f"starting pymap with {args.messages} messages ...", flush=True)
    started = time.monotonic()
    server, port = start_server(args.messages)
    print(f"  ready in {time.monotonic() - started:.1f}s on port {port}", flush=True)
    # A throwaway test database (test_<name>), so the benchmark never writes into real data.
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        # pymap parses a message's headers on first fetch and caches them: warm it up so that
        # neither contender pays for that.
        bare_loop(port, DEMO_USER, DEMO_PASSWORD, batch_size)
        rounds = []
        for round_ in range(1, args.rounds + 1):
            account = account_create(
                name=f"bench {round_}",
                actor=Actor.system("bench"),
                imap={
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "none",
                    "username": DEMO_USER,
                    "password": DEMO_PASSWORD,
                },
            )

            def bare():
                return bare_loop(port, DEMO_USER, DEMO_PASSWORD, batch_size)

            def sync(account=account):
                return sync_account(account.pk)["new_messages"]

            # Alternate who goes first, so a drift in the machine's load favours neither.
            order = [("bare", bare), ("sync", sync)]
            measured = {n: measure(fn) for n, fn in (order if round_ % 2 else order[::-1])}
            stored = MailboxMessage.objects.filter(account=account).count()
            if {measured["bare"][0], measured["sync"][0], stored} != {args.messages}:
                print(f"  round {round_}: counts {measured} stored {stored}: WRONG COUNT")
                return 1
            rounds.append(measured)
            print(
                f"  round {round_}: bare {measured['bare'][1]:,.0f} msg/s "
                f"({measured['bare'][2]:.2f} ms CPU per 1000), "
                f"sync {measured['sync'][1]:,.0f} msg/s ({measured['sync'][2]:.2f} ms CPU "
                f"per 1000), ratio {measured['sync'][1] / measured['bare'][1]:.2f}x",
                flush=True,
            )
        ratio = statistics.median(r["sync"][1] / r["bare"][1] for r in rounds)
        bare_rate = statistics.median(r["bare"][1] for r in rounds)
        sync_rate = statistics.median(r["sync"][1] for r in rounds)
        vendor = django.db.connection.vendor
        print(
            f"imap sync of {args.messages} envelopes ({vendor}, batches of {batch_size}, median "
            f"of {args.rounds} rounds): bare imaplib {bare_rate:,.0f} msg/s, imap_sync_messages "
            f"{sync_rate:,.0f} msg/s, ratio {ratio:.2f}x (target >= {TARGET}x): "
            f"{'OK' if ratio >= TARGET else 'BELOW'}"
        )
        return 0
    finally:
        teardown_databases(old_config, verbosity=0)
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
