"""Actions for the execution tests, registered in worker processes through
JOBS_EXTRA_ACTION_MODULES=tests.execution.actions (and imported by the tests themselves)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from jobs.execution.actions.registry import ActionContext, JobError, action


def _append(path: Path, line: str) -> None:
    # One O_APPEND write per line: lines written by many processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@action("test_record", max_attempts=5, timeout=30, backoff_base=0.2)
def record(ctx: ActionContext) -> dict[str, Any]:
    """Record each execution in payload["dir"]/runs.log, and an overlap when another execution
    of the same job is running at this moment (its marker file exists)."""
    directory = Path(ctx.payload["dir"])
    marker = directory / f"{ctx.job_id}.running"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        _append(directory / "overlaps.log", ctx.job_id)
        fd = None
    try:
        _append(directory / "runs.log", f"{ctx.job_id} {ctx.attempt} {os.getpid()}")
        time.sleep(float(ctx.payload.get("seconds", 0)))
    finally:
        if fd is not None:
            os.close(fd)
            marker.unlink()
    return {"attempt": ctx.attempt}


@action("test_flaky", max_attempts=3, timeout=30, backoff_base=0.5, backoff_factor=2.0)
def flaky(ctx: ActionContext) -> None:
    """Always fails with a retryable provider error."""
    raise JobError("provider_unavailable", f"attempt {ctx.attempt}: try later", retryable=True)


@action("test_crash", max_attempts=3, timeout=30)
def crash(ctx: ActionContext) -> None:
    """An unexpected exception: internal_error, not retried."""
    raise RuntimeError("boom in the handler")


@action("test_slow", max_attempts=1, timeout=1)
def slow(ctx: ActionContext) -> dict[str, Any]:
    """Sleeps payload["seconds"], longer than its 1 s timeout."""
    time.sleep(float(ctx.payload.get("seconds", 30)))
    return {"slept": True}


@action("test_hang_first", max_attempts=3, timeout=60, backoff_base=0.2)
def hang_first(ctx: ActionContext) -> dict[str, Any]:
    """The first attempt sleeps long enough to be killed; the next ones succeed at once."""
    if ctx.attempt == 1:
        time.sleep(float(ctx.payload.get("seconds", 50)))
    return {"attempt": ctx.attempt}
