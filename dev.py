#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11+.

    python3 dev.py demo    # venv, install, migrate, demo data, then serve console + workers
    python3 dev.py test    # venv, install, run the whole test suite (pytest args may follow)
    python3 dev.py bench   # venv, install, run the benchmarks (see README)

Each creates (or reuses) .venv and reinstalls only when pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
# Absolute: the commands run from ROOT, wherever dev.py was started.
VENV = Path(os.environ.get("JOBS_VENV", ROOT / ".venv")).resolve()
PYTHON = VENV / "bin" / "python"
# The tests use the demo's mail server as a real IMAP server: both need the `demo` extra.
EXTRAS = "dev,demo"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py may be started by an older python3)
        sys.exit("Python 3.11 or newer is required.")
    if not PYTHON.exists():
        print(f"Creating virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # Reinstall when pyproject.toml or the extras change.
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    digest = hashlib.sha256(pyproject + EXTRAS.encode()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if not stamp.exists():
        print("Installing dependencies ...", flush=True)
        pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[{EXTRAS}]"], check=True)
        for old in VENV.glob(".installed-*"):
            old.unlink()
        stamp.touch()


def run(args: list[str], env: dict[str, str] | None = None) -> NoReturn:
    """Become the command (exec), so that signals meant for `dev.py` (Ctrl-C, or a SIGTERM from
    `timeout` or a process manager) reach it directly and nothing is left running behind."""
    sys.stdout.flush()
    os.chdir(ROOT)
    os.execve(args[0], args, {**os.environ, **(env or {})})


def main() -> int:
    command, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if command not in {"demo", "test", "bench"}:
        print(__doc__)
        return 0 if command == "help" else 2
    ensure_venv()
    if command == "demo":
        # Debug mode on an embedded SQLite file: a local demo, never a deployment.
        return run(
            [str(PYTHON), "manage.py", "demo", *rest],
            {"DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1")},
        )
    if command == "test":
        env = {"DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test-only-secret-key")}
        return run([str(PYTHON), "-m", "pytest", *rest], env)
    env = {"DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "bench-only-secret-key")}
    return run([str(PYTHON), "-m", "tests.bench", *rest], env)


if __name__ == "__main__":
    sys.exit(main())
