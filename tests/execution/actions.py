"""Actions for the execution tests, registered in worker processes through
JOBS_EXTRA_ACTION_MODULES=tests.execution.actions (and imported by the tests themselves)."""

from __future__ import annotations

import fcntl
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


@action("test_stubborn", max_attempts=3, timeout=4, backoff_base=0.2)
def stubborn(ctx: ActionContext) -> dict[str, Any]:
    """Sleeps payload["seconds"] without ever checking ownership: only its 4 s timeout stops it
    (tests/execution/test_cancel_cluster.py)."""
    time.sleep(float(ctx.payload.get("seconds", 30)))
    return {"slept": True}


# --- the fault suite's recorder (tests/execution/test_faults.py, tests/execution/faults.py) ---


def _mark(path: Path) -> None:
    """Create the empty file `path`, never one that exists: a file's creation is atomic, so
    everything is in its name and a kill -9 never leaves a record half written."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


@action("fault_record", max_attempts=10, timeout=60, backoff_base=0.2)
def fault_record(ctx: ActionContext) -> dict[str, Any]:
    """Record each execution as files in payload["dir"], robust to kill -9 (tests/execution/
    faults.py reads them):

    - `<job>.<attempt>.<pid>.<start ns>.start` when it starts (time.time_ns()), and
      `<job>.<attempt>.<pid>.<start ns>.<end ns>.<outcome>.end` when it ends ("done", or the
      exception that ended it); a killed execution has a start and no end;
    - `<job>.<attempt>.<pid>.<start ns>.overlap` when another execution of the same job is
      alive at this moment. Each execution holds an exclusive flock on `<job>.lock` while it
      runs; the kernel releases it when the process dies, however it dies, so a killed run
      never looks alive.

    Works payload["seconds"] on the first attempt and payload.get("then", seconds) on later
    ones; with payload["until"], the first attempt works until that file exists instead. With
    payload["cooperative"], it checks ownership every 20 ms, as a long handler should
    (ctx.ensure_owned), and stops when the run is no longer its own."""
    directory = Path(ctx.payload["dir"])
    name = f"{ctx.job_id}.{ctx.attempt}.{os.getpid()}.{time.time_ns()}"
    lock = os.open(directory / f"{ctx.job_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _mark(directory / f"{name}.overlap")
        _mark(directory / f"{name}.start")
        outcome = "done"
        try:
            _work(ctx)
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            _mark(directory / f"{name}.{time.time_ns()}.{outcome}.end")
    finally:
        os.close(lock)  # releases the flock
    return {"attempt": ctx.attempt}


def _work(ctx: ActionContext) -> None:
    payload = ctx.payload
    first = ctx.attempt == 1
    seconds = float(payload.get("seconds", 0))
    if not first:
        seconds = float(payload.get("then", seconds))
    until = Path(payload["dir"]) / payload["until"] if first and payload.get("until") else None
    deadline = time.monotonic() + seconds
    while True:
        if payload.get("cooperative"):
            ctx.ensure_owned()
        if until is not None:
            if until.exists():
                return
        elif time.monotonic() >= deadline:
            return
        step = 0.02 if until or payload.get("cooperative") else deadline - time.monotonic()
        time.sleep(max(step, 0))


# --- concurrency limits (tests/execution/test_fairness_limits.py) ----------------------------


@action("test_limited", max_attempts=3, timeout=60, backoff_base=0.2, per_account_limit=2)
def limited(ctx: ActionContext) -> dict[str, Any]:
    """At most 2 at once per account by its policy. Records in payload["dir"] each start
    (`starts.log`: job, account, attempt, pid) and, when more runs of the account are alive
    than payload["limit"] allows at this moment, the job in `over_limit.log`. Each run holds a
    marker file while it works, created before it counts the others: of two runs that overlap,
    the later one always sees the earlier. Works payload["seconds"] (the first attempt works
    payload["first_seconds"] instead when given)."""
    directory = Path(ctx.payload["dir"])
    marker = directory / f"{ctx.account_id}.{ctx.job_id}.{os.getpid()}.running"
    marker.touch()
    try:
        _append(directory / "starts.log", f"{ctx.job_id} {ctx.account_id} {ctx.attempt}")
        alive = [
            path
            for path in directory.glob(f"{ctx.account_id}.*.running")
            if _alive(int(path.name.split(".")[2]))
        ]
        if len(alive) > int(ctx.payload["limit"]):
            _append(directory / "over_limit.log", f"{ctx.job_id} {len(alive)}")
        seconds = float(ctx.payload.get("seconds", 0))
        if ctx.attempt == 1 and "first_seconds" in ctx.payload:
            seconds = float(ctx.payload["first_seconds"])
        time.sleep(seconds)
    finally:
        marker.unlink(missing_ok=True)
    return {"attempt": ctx.attempt}


def _alive(pid: int) -> bool:
    # A run killed with kill -9 leaves its marker; its process is gone.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
