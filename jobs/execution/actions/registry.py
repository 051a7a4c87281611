"""Registries: actions (name → handler and policy), task kinds and provider event types
(→ the jobs they produce)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings


class JobError(Exception):
    """Raised by a handler to fail the attempt with a classified error."""

    def __init__(self, code: str, detail: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.retryable = retryable


@dataclass(frozen=True)
class ErrorAdvice:
    """What an operator should fix before retrying a job that failed with an error code, shown
    on the job page. Declared beside the codes (`advise(...)` where a handler's codes live)."""

    code: str
    fix: str  # "the server rejected the password: fix the account's credentials, then retry"
    where: str = ""  # "account": the fix is made on the account's page (the job page links it)


_ADVICE: dict[str, ErrorAdvice] = {}


def advise(code: str, fix: str, *, where: str = "") -> None:
    """Declare what to fix first after a failure with `code`."""
    _ADVICE[code] = ErrorAdvice(code, fix, where)


def advice_for(code: str) -> ErrorAdvice | None:
    return _ADVICE.get(code)


# The codes the worker and the sweeper give themselves (jobs.execution.worker,
# jobs.services.maintenance).
advise(
    "internal_error",
    "the handler raised an unexpected exception: read the traceback of the last attempt, fix "
    "the cause (or the data it choked on), then retry",
)
advise(
    "worker_lost",
    "the worker stopped heart-beating (killed, out of memory, or cut off from the database): "
    "check the workers, then retry",
)


class RunLost(BaseException):
    """The run is no longer this worker's: the sweeper declared it lost (its heartbeat went
    stale) and another worker may already run the job, or no heartbeat reached the database
    for nearly the grace and the sweeper may do so at any moment. Raised by
    ActionContext.ensure_owned so a long handler stops instead of overlapping with the new run;
    the worker records nothing. A BaseException, so a handler's `except Exception` cannot
    swallow it."""


class RunCancelled(BaseException):
    """An operator cancelled the job while it ran (jobs.services.job_cancel). Raised by
    ActionContext.ensure_owned so the handler stops at its next ownership check; the worker
    records the attempt `cancelled` and the job is resolved. A BaseException, so a handler's
    `except Exception` cannot swallow it."""


@dataclass(frozen=True)
class ActionPolicy:
    max_attempts: int | None = None  # None: settings.JOBS_DEFAULT_MAX_ATTEMPTS
    timeout: float | None = None  # seconds; None: settings.JOBS_DEFAULT_TIMEOUT
    backoff_base: float = 5.0  # delay before the second attempt, in seconds
    backoff_factor: float = 2.0
    backoff_max: float = 3600.0
    jitter: float = 0.25  # ± fraction of the delay, so retries of one outage spread out
    # Error codes that are retried whatever the error says; others follow JobError.retryable.
    retry_on: frozenset[str] = frozenset()
    # At most this many jobs of the action run at once per account (None: no limit); an
    # account may set its own (jobs.models.ConcurrencyLimit). A job over it waits without
    # spending an attempt (jobs.services.limits).
    per_account_limit: int | None = None

    @property
    def effective_max_attempts(self) -> int:
        return self.max_attempts or settings.JOBS_DEFAULT_MAX_ATTEMPTS

    @property
    def effective_timeout(self) -> float:
        return self.timeout or float(settings.JOBS_DEFAULT_TIMEOUT)

    def is_retryable(self, code: str, retryable: bool) -> bool:
        return retryable or code in self.retry_on

    def backoff_seconds(self, attempt_number: int) -> float:
        """Delay after the attempt numbered `attempt_number` (1-based) failed."""
        delay = min(
            self.backoff_max, self.backoff_base * self.backoff_factor ** (attempt_number - 1)
        )
        spread = delay * self.jitter
        return max(0.0, delay + random.uniform(-spread, spread))


@dataclass(frozen=True)
class ActionContext:
    """What a handler gets: ids and the payload, never a model instance it could save."""

    job_id: str
    account_id: str
    action: str
    payload: dict[str, Any]
    attempt: int
    task_id: str | None = None
    # Set by the worker: whether the sweeper has taken this run away (see RunLost).
    is_lost: Callable[[], bool] = field(default=lambda: False, repr=False, compare=False)
    # Set by the worker: whether an operator cancelled the job (see RunCancelled).
    is_cancelled: Callable[[], bool] = field(default=lambda: False, repr=False, compare=False)

    def ensure_owned(self) -> None:
        """Raise RunLost if this run is no longer ours, RunCancelled if an operator cancelled
        it. Long handlers call it between units of work (the IMAP sync between batches),
        before writing anything. A cancel reaches the worker with its next heartbeat, so it
        is seen here within JOBS_HEARTBEAT_SECONDS of the request."""
        if self.is_lost():
            raise RunLost(f"run {self.attempt} of {self.job_id} was declared lost")
        if self.is_cancelled():
            raise RunCancelled(f"run {self.attempt} of {self.job_id} was cancelled")


Handler = Callable[[ActionContext], dict[str, Any] | None]


@dataclass(frozen=True)
class RegisteredAction:
    name: str
    handler: Handler
    policy: ActionPolicy


_ACTIONS: dict[str, RegisteredAction] = {}
DEFAULT_POLICY = ActionPolicy()


def action(name: str, **policy: Any) -> Callable[[Handler], Handler]:
    """Register a handler under `name`: @action("imap_sync_messages", max_attempts=5)."""

    def register(handler: Handler) -> Handler:
        if "retry_on" in policy:
            policy["retry_on"] = frozenset(policy["retry_on"])
        _ACTIONS[name] = RegisteredAction(name, handler, ActionPolicy(**policy))
        return handler

    return register


def get_action(name: str) -> RegisteredAction | None:
    return _ACTIONS.get(name)


def policy_for(name: str) -> ActionPolicy:
    registered = _ACTIONS.get(name)
    return registered.policy if registered else DEFAULT_POLICY


def action_names() -> list[str]:
    return sorted(_ACTIONS)


def limited_action_names() -> list[str]:
    """The actions whose policy caps how many of their jobs run at once per account."""
    return sorted(name for name, a in _ACTIONS.items() if a.policy.per_account_limit is not None)


# --- What produces jobs -----------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    action: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRoute:
    produce: Callable[[dict[str, Any]], list[JobSpec]]
    # While a job of the same account and action is scheduled or queued, a new event joins it
    # instead of creating another (ten "mailbox changed" pings need one sync, not ten).
    coalesce: bool = False
    # The JSON schema of the payloads `produce` accepts (the OpenAPI schema shows it).
    payload_schema: dict[str, Any] | None = None


_TASK_KINDS: dict[str, Callable[[dict[str, Any]], list[JobSpec]]] = {}
_TASK_PARAMS_SCHEMAS: dict[str, dict[str, Any] | None] = {}
# A registered function of a task's params or an event's payload, returning job specs.
_Produce = TypeVar("_Produce", bound=Callable[[dict[str, Any]], list[JobSpec]])
_EVENT_TYPES: dict[tuple[str, str], EventRoute] = {}


def task_kind(
    name: str, *, params_schema: dict[str, Any] | None = None
) -> Callable[[_Produce], _Produce]:
    """Register a task kind: a function of the task's params returning the jobs to create; it
    raises ValueError or TypeError for params it refuses. `params_schema`: the JSON schema of
    exactly the params it accepts (None: any object), shown in the OpenAPI schema."""

    def register(produce: _Produce) -> _Produce:
        _TASK_KINDS[name] = produce
        _TASK_PARAMS_SCHEMAS[name] = params_schema
        return produce

    return register


def provider_event_type(
    provider: str,
    type_: str,
    *,
    coalesce: bool = False,
    payload_schema: dict[str, Any] | None = None,
) -> Callable[[_Produce], _Produce]:
    """Register a provider event type: a function of the event payload returning job specs
    (ValueError or TypeError for a payload it refuses; `payload_schema` as for task kinds)."""

    def register(produce: _Produce) -> _Produce:
        _EVENT_TYPES[(provider, type_)] = EventRoute(produce, coalesce, payload_schema)
        return produce

    return register


def get_task_kind(name: str) -> Callable[[dict[str, Any]], list[JobSpec]] | None:
    return _TASK_KINDS.get(name)


def task_params_schema(name: str) -> dict[str, Any] | None:
    return _TASK_PARAMS_SCHEMAS.get(name)


def task_kind_names() -> list[str]:
    return sorted(_TASK_KINDS)


def get_event_route(provider: str, type_: str) -> EventRoute | None:
    return _EVENT_TYPES.get((provider, type_))


def event_type_names() -> list[tuple[str, str]]:
    return sorted(_EVENT_TYPES)
