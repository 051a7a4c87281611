"""Benchmarks: `python3 dev.py bench SUITE [options]`, SUITE one of the names in SUITES, or all.

Each reports its figures beside a baseline measured in the same run (raw SQL, raw django-q2,
a bare imaplib loop), as ratios. They are not tests: nothing here asserts a time.
"""

from __future__ import annotations

import importlib
import os
import sys

SUITES = {
    "api": "tests.bench.bench_api",
    "execution": "tests.bench.bench_execution",
    "admin": "tests.bench.bench_admin",
    "imap": "tests.bench.bench_imap",
    "bulk": "tests.bench.bench_bulk",
    # module:function when a module holds more than one suite.
    "fairness": "tests.bench.bench_fairness:fairness",
    "scaleout": "tests.bench.bench_fairness:scaleout",
    "prune": "tests.bench.bench_prune",
    "dataset": "tests.bench.bench_dataset",
    # Issue 17's targets on the 10M-job realistic data set (loads it first, as `dataset`).
    "scale": "tests.bench.bench_scale",
    # Issue 17's simulated month: 30 days of schedules, failures, an incident and retention.
    "month": "tests.bench.bench_month",
}


def main(argv: list[str]) -> int:
    name = argv[0] if argv else "help"
    if name not in {*SUITES, "all"}:
        print(__doc__)
        print("Suites:", ", ".join(SUITES))
        return 0 if name in {"help", "-h", "--help"} else 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobsconsole.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if not settings.DEBUG:
        # Pages are timed as production serves them: the release step's collectstatic (the
        # Procfile) writes the manifest that {% static %} reads under DEBUG off.
        call_command("collectstatic", interactive=False, verbosity=0)
    status = 0
    # `all` leaves out what loads or drives the 10M-job realistic data set (`dataset`, `scale`)
    # and the simulated month (`month`): ask for them by name.
    long = {"dataset", "scale", "month"}
    for suite in [s for s in SUITES if s not in long] if name == "all" else [name]:
        print(f"\n=== bench {suite}", flush=True)
        module_name, _, function = SUITES[suite].partition(":")
        module = importlib.import_module(module_name)
        status |= getattr(module, function or "main")(argv[1:])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
