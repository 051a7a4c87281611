"""Running an operator command over the rows an operator selected on the queue's page: one
service call per job, each refusal caught and counted, so the command reports "12 jobs retried,
3 skipped: running". Everything a filter matches ("All N matching", the triage's groups) is a
bulk operation instead (jobs.services.bulk, jobs.admin.bulk), with no cap."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import ngettext

from core.actors import Actor
from core.errors import DomainError, InvalidTransition, NotFound
from jobs import services
from jobs.models import Job
from jobs.states import Command

# The commands the job page offers as buttons (a POST form each).
BUTTON_COMMANDS = (Command.RETRY, Command.TRIGGER, Command.RESOLVE, Command.CANCEL)

PAST_TENSE = {
    "retry": "retried",
    "resolve": "resolved",
    "trigger": "triggered",
    "delete": "deleted",
    # A cancel is a request: the job's worker stops the run (jobs.services.job_cancel).
    "cancel": "asked to stop",
}


@dataclass
class BulkOutcome:
    command: str
    done: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def message(self) -> str:
        """ "120 jobs retried, 3 skipped: running, 1 skipped: sibling running." """
        parts = [
            ngettext("%(count)d job %(verb)s", "%(count)d jobs %(verb)s", self.done)
            % {"count": self.done, "verb": PAST_TENSE[self.command]}
        ]
        for reason, count in sorted(self.skipped.items(), key=lambda item: -item[1]):
            parts.append(f"{count} skipped: {reason}")
        return ", ".join(parts) + "."


def skip_reason(error: DomainError) -> str:
    """Why a job was left alone, in an operator's words."""
    if isinstance(error, InvalidTransition):
        return error.status
    if isinstance(error, NotFound):
        return "deleted meanwhile"
    if error.code == "sibling_running":
        return "another job of the same account and action is running"
    return error.message


def command_runner(command: str, actor: Actor, data: dict[str, Any]) -> Callable[[str], Job | None]:
    """The service call for one job (jobs.services.job_command), with the form's inputs bound."""
    command = Command(command)
    return lambda job_id: services.job_command(command, job_id=job_id, actor=actor, inputs=data)


def run_each(command: str, job_ids: Iterable[str], run: Callable[[str], object]) -> BulkOutcome:
    outcome = BulkOutcome(command)
    for job_id in job_ids:
        try:
            run(job_id)
        except DomainError as error:
            outcome.skipped[skip_reason(error)] += 1
        else:
            outcome.done += 1
    return outcome


def run_bulk(
    command: str, queryset: QuerySet[Job], *, actor: Actor, data: dict[str, Any]
) -> BulkOutcome:
    """Run `command` on each selected job of `queryset` (a page's selection), oldest first."""
    ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    return run_each(command, ids, command_runner(command, actor, data))
