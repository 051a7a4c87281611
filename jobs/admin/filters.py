"""The queue view's filters. Every filter that the API knows goes through the one FilterSet
(jobs.filters), under the same query-string names, so the admin's "everything this filter
matches" and "delete by search" act on exactly what the queue view shows. Two filters are the
admin's own: `account` (pins the view to one account) and `stalled` (running jobs whose heartbeat
is older than JOBS_STALL_GRACE_SECONDS: stalled now, not yet swept)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Model, QuerySet
from django.http import HttpRequest, QueryDict
from django.utils import timezone

from accounts.models import Account
from core.errors import ValidationFailed
from core.ids import is_valid_id
from jobs.execution.actions.registry import action_names
from jobs.filters import FILTER_FIELDS, filter_jobs, normalize_filter_params
from jobs.models import Job
from jobs.reports import failing_error_codes
from jobs.states import NEEDS_OPERATOR, JobStatus, stale_heartbeat

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin
    from django.contrib.admin.views.main import ChangeList

ACCOUNT_PARAM = "account"
STALLED_PARAM = "stalled"
SEARCH_PARAM = "q"
# Query-string names that narrow the queue (the admin's own plus the FilterSet's).
QUEUE_PARAMS = frozenset(FILTER_FIELDS) | {ACCOUNT_PARAM, STALLED_PARAM}

_WORDS = {
    "status": "status",
    "action": "action",
    "last_error_code": "error code",
    "task_id": "task",
    "provider_event_id": "provider event",
    "created_after": "created at or after",
    "created_before": "created before",
    "updated_after": "updated at or after",
    "updated_before": "updated before",
    "run_at_after": "due at or after",
    "run_at_before": "due before",
    "attempt_count_min": "attempts at least",
    "attempt_count_max": "attempts at most",
    "label": "label",
    "payload": "payload contains",
}


def split_search(term: str) -> tuple[str, dict[str, str]]:
    """Operators paste ids into the search box: an account, task or event id becomes that
    filter; anything else is the FilterSet's `q` (error detail text, or a job id)."""
    term = term.strip()
    if is_valid_id(term, "acc"):
        return term, {}
    if is_valid_id(term, "tsk"):
        return "", {"task_id": term}
    if is_valid_id(term, "evt"):
        return "", {"provider_event_id": term}
    return "", ({"q": term} if term else {})


@dataclass(frozen=True)
class QueueFilter:
    """What a queue view's query string selects, in the FilterSet's terms."""

    account_id: str = ""
    stalled_now: bool = False
    params: QueryDict = field(default_factory=QueryDict)

    @classmethod
    def from_query(cls, query: QueryDict) -> QueueFilter:
        """Read a changelist query string (ignoring paging, ordering and the like). Raises
        ValidationFailed naming a bad field or value."""
        data: dict[str, list[str]] = {
            name: query.getlist(name)
            for name in query
            if name in FILTER_FIELDS and name != SEARCH_PARAM
        }
        account_id = query.get(ACCOUNT_PARAM, "").strip()
        search_account, search = split_search(query.get(SEARCH_PARAM, ""))
        if search_account:
            if account_id and account_id != search_account:
                raise ValidationFailed.for_field("q", "names another account than the filter.")
            account_id = search_account
        for name, value in search.items():
            data.setdefault(name, []).append(value)
        if account_id and not is_valid_id(account_id, "acc"):
            raise ValidationFailed.for_field(ACCOUNT_PARAM, "is not an account id.")
        params = normalize_filter_params(data)
        filter_jobs(Job.objects.none(), params)  # validates the values; runs no query
        return cls(account_id, query.get(STALLED_PARAM) == "1", params)

    def apply(self, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.account_id:
            queryset = queryset.filter(account_id=self.account_id)
        if self.stalled_now:
            queryset = queryset.filter(stale_heartbeat())
        return filter_jobs(queryset, self.params)

    @property
    def is_empty(self) -> bool:
        return not (self.account_id or self.stalled_now or self.params)

    def filter_dict(self) -> dict[str, list[str]]:
        """The FilterSet part, as the services take it (search-delete)."""
        return {name: self.params.getlist(name) for name in self.params}

    def query_string(self) -> str:
        """The changelist query string that shows this selection."""
        pairs: list[tuple[str, str]] = []
        if self.account_id:
            pairs.append((ACCOUNT_PARAM, self.account_id))
        if self.stalled_now:
            pairs.append((STALLED_PARAM, "1"))
        for name in self.params:
            values = self.params.getlist(name)
            pairs.append((name, ",".join(values)) if name != "q" else (name, values[0]))
        return urlencode(pairs)

    def describe(self, account: Account | None = None) -> str:
        """The filter in words, for confirmation pages and audit notes."""
        parts: list[str] = []
        if self.account_id:
            name = f"{account.name} ({self.account_id})" if account else self.account_id
            parts.append(f"account {name}")
        if self.stalled_now:
            parts.append(
                f"stalled now (running, no heartbeat for {settings.JOBS_STALL_GRACE_SECONDS:g} s)"
            )
        for name in self.params:
            values = self.params.getlist(name)
            if name == "q":
                parts.append(f"error detail contains “{values[0]}” (or job id)")
            else:
                parts.append(f"{_WORDS.get(name, name)} {' or '.join(values)}")
        return "; ".join(parts) if parts else "no filter (every job)"


# --- sidebar filters ---------------------------------------------------------------------------


class QueueListFilter(admin.ListFilter):
    """A sidebar filter over some queue parameters, filtering through the FilterSet."""

    parameters: tuple[str, ...] = ()
    # Each of our parameters holds its list of values (ListFilter's may hold anything).
    used_parameters: dict[str, list[str]]  # type: ignore[assignment]

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: ModelAdmin[Any],
    ) -> None:
        super().__init__(request, params, model, model_admin)
        # Popping the parameters tells the changelist they are ours, not field lookups.
        for name in self.parameters:
            if name in params:
                self.used_parameters[name] = [v for v in params.pop(name) if v != ""]

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def has_output(self) -> bool:
        return True

    def value(self, name: str) -> list[str]:
        return [
            part.strip()
            for value in self.used_parameters.get(name, [])
            for part in value.split(",")
            if part.strip()
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        data = {name: values for name, values in self.used_parameters.items() if values}
        if not data:
            return queryset
        try:
            return filter_jobs(queryset, normalize_filter_params(data))
        except ValidationFailed as exc:
            raise IncorrectLookupParameters(exc.message) from exc

    def _choice(
        self, changelist: ChangeList, label: str, values: dict[str, str], selected: bool
    ) -> dict[str, Any]:
        remove = [name for name in self.parameters if name not in values]
        return {
            "selected": selected,
            "query_string": changelist.get_query_string(values, remove),
            "display": label,
        }

    def _all(self, changelist: ChangeList) -> dict[str, Any]:
        return {
            "selected": not any(self.used_parameters.values()),
            "query_string": changelist.get_query_string(remove=list(self.parameters)),
            "display": "All",
        }


class StatusFilter(QueueListFilter):
    title = "status"
    parameters = ("status", STALLED_PARAM)

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: ModelAdmin[Any],
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.stalled_now = self.used_parameters.pop(STALLED_PARAM, None) == ["1"]

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.stalled_now:
            queryset = queryset.filter(stale_heartbeat())
        return super().queryset(request, queryset)

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        current = set(self.value("status"))
        stalled_now = self.stalled_now
        yield {**self._all(changelist), "selected": not current and not stalled_now}
        needs = ",".join(sorted(NEEDS_OPERATOR))
        yield self._choice(
            changelist,
            "Needs an operator (failed or stalled)",
            {"status": needs},
            current == set(NEEDS_OPERATOR),
        )
        for status in JobStatus:
            yield self._choice(
                changelist, status.label, {"status": status.value}, current == {status}
            )
        yield self._choice(
            changelist,
            f"Stalled now (running, no heartbeat for {settings.JOBS_STALL_GRACE_SECONDS:g} s)",
            {STALLED_PARAM: "1"},
            stalled_now,
        )


class ActionFilter(QueueListFilter):
    title = "action"
    parameters = ("action",)

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        current = set(self.value("action"))
        yield self._all(changelist)
        for name in sorted(set(action_names()) | current):
            yield self._choice(changelist, name, {"action": name}, current == {name})


class ErrorCodeFilter(QueueListFilter):
    title = "error code"
    parameters = ("last_error_code",)

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        current = set(self.value("last_error_code"))
        yield self._all(changelist)
        for code in sorted(set(failing_error_codes()) | current):
            yield self._choice(changelist, code, {"last_error_code": code}, current == {code})


class AccountFilter(QueueListFilter):
    """Pins the queue to one account (the account page and the search box set it)."""

    title = "account"
    parameters = (ACCOUNT_PARAM,)

    def has_output(self) -> bool:
        return bool(self.value(ACCOUNT_PARAM))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        values = self.value(ACCOUNT_PARAM)
        if not values:
            return queryset
        if len(values) > 1 or not is_valid_id(values[0], "acc"):
            raise IncorrectLookupParameters("account: give one account id.")
        return queryset.filter(account_id=values[0])

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        account_id = self.value(ACCOUNT_PARAM)[0]
        account = Account.objects.filter(pk=account_id).only("name").first()
        yield self._all(changelist)
        yield self._choice(
            changelist,
            f"{account.name} ({account_id})" if account else account_id,
            {ACCOUNT_PARAM: account_id},
            True,
        )


class TaskFilter(QueueListFilter):
    title = "task"
    parameters = ("task_id",)

    def has_output(self) -> bool:
        return bool(self.value("task_id"))

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        yield self._all(changelist)
        task_id = self.value("task_id")[0]
        yield self._choice(changelist, task_id, {"task_id": task_id}, True)


class _TimeRangeFilter(QueueListFilter):
    after: str
    before: str
    ranges = (
        ("Last hour", timedelta(hours=1)),
        ("Last 24 hours", timedelta(days=1)),
        ("Last 7 days", timedelta(days=7)),
    )

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: ModelAdmin[Any],
    ) -> None:
        self.parameters = (self.after, self.before)
        super().__init__(request, params, model, model_admin)

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        # Rounded to the minute so the links of one page view are stable to compare.
        now = timezone.now().replace(second=0, microsecond=0)
        after, before = self.value(self.after), self.value(self.before)
        yield self._all(changelist)
        matched = False
        for label, span in self.ranges:
            since = _iso(now - span)
            selected = after == [since] and not before
            matched |= selected
            yield self._choice(changelist, label, {self.after: since}, selected)
        older = _iso(now - timedelta(days=7))
        selected = before == [older] and not after
        matched |= selected
        yield self._choice(changelist, "Older than 7 days", {self.before: older}, selected)
        if (after or before) and not matched:
            words = " ".join(
                part
                for part in (
                    f"from {after[0]}" if after else "",
                    f"before {before[0]}" if before else "",
                )
                if part
            )
            values = {name: v[0] for name, v in ((self.after, after), (self.before, before)) if v}
            yield self._choice(changelist, words, values, True)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CreatedFilter(_TimeRangeFilter):
    title = "created"
    after, before = "created_after", "created_before"


class UpdatedFilter(_TimeRangeFilter):
    title = "updated"
    after, before = "updated_after", "updated_before"


class MoreFilter(QueueListFilter):
    """The FilterSet's other fields (from a pasted API query or a link): shown when in use."""

    title = "other filters"
    parameters = tuple(
        sorted(
            FILTER_FIELDS
            - {"status", "action", "last_error_code", "task_id", "q"}
            - {"created_after", "created_before", "updated_after", "updated_before"}
        )
    )

    def has_output(self) -> bool:
        return any(self.used_parameters.values())

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        yield self._all(changelist)
        for name, values in self.used_parameters.items():
            if values:
                yield {
                    "selected": True,
                    "query_string": changelist.get_query_string(remove=[name]),
                    "display": f"{_WORDS.get(name, name)} {', '.join(values)} (click to clear)",
                }


QUEUE_LIST_FILTERS = [
    StatusFilter,
    AccountFilter,
    ActionFilter,
    ErrorCodeFilter,
    TaskFilter,
    CreatedFilter,
    UpdatedFilter,
    MoreFilter,
]
