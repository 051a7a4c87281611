"""Paging the queue without counting it. A COUNT(*) over a million jobs costs more than the whole
page; the queue view fetches one row more than a page to know whether there is a next one, and
shows an estimate: PostgreSQL's own row estimate (pg_class.reltuples) for the unfiltered table,
an exact count up to a cap for a filtered view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.contrib.admin.options import IncorrectLookupParameters, ModelAdmin, ShowFacets
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from core import db, live

COUNT_CAP = 1000


@dataclass(frozen=True)
class CountHint:
    """How many rows a view holds, as far as it is cheap to know."""

    value: int
    exact: bool  # False: an estimate, or a lower bound when `capped`
    capped: bool = False

    def __str__(self) -> str:
        if self.capped:
            return f"{self.value:,}+"
        return f"{self.value:,}" if self.exact else f"about {self.value:,}"


def table_estimate(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's row estimate for the queryset's table (kept by ANALYZE and autovacuum)."""
    return db.table_estimate(queryset.model, queryset.db)


def count_hint(queryset: QuerySet[Any], *, filtered: bool, cap: int = COUNT_CAP) -> CountHint:
    """A cheap count for display: the table estimate when unfiltered and large, else an exact
    count that stops at `cap`."""
    if not filtered:
        estimate = table_estimate(queryset)
        if estimate is not None and estimate > cap:
            return CountHint(estimate, exact=False)
    counted = queryset.order_by()[: cap + 1].count()
    if counted > cap:
        return CountHint(cap, exact=False, capped=True)
    return CountHint(counted, exact=True)


class NoCountPaginator(Paginator):  # type: ignore[type-arg]  # not subscriptable at runtime
    """A paginator whose `count` is the cheap hint, never a full COUNT(*)."""

    def __init__(
        self, *args: Any, filtered: bool = True, cap: int = COUNT_CAP, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.filtered = filtered
        self.cap = cap

    @cached_property
    def hint(self) -> CountHint:
        # The admin pages querysets only.
        queryset = cast("QuerySet[Any]", self.object_list)
        return count_hint(queryset, filtered=self.filtered, cap=self.cap)

    @cached_property
    def count(self) -> int:
        return self.hint.value


class NoCountChangeList(ChangeList):
    """A changelist that pages with LIMIT per_page + 1 instead of counting."""

    model_admin: _NoCountModelAdmin
    count_hint: CountHint | None  # None on a live refresh, which counts nothing

    def get_results(self, request: HttpRequest) -> None:
        filtered = bool(self.has_active_filters or self.query)
        paginator = self.model_admin.get_paginator(
            request, self.queryset, self.list_per_page, filtered=filtered
        )
        per_page = self.list_per_page
        start = (max(self.page_num, 1) - 1) * per_page
        page = self.model_admin.changelist_page(self.queryset)
        rows = list(page[start : start + per_page + 1])
        if self.page_num > 1 and not rows:
            raise IncorrectLookupParameters("No such page.")
        self.has_next_page = len(rows) > per_page
        self.has_previous_page = self.page_num > 1
        self.result_list = rows[:per_page]
        if live.is_refresh(request):
            # A live refresh re-renders the rows only: the page's query, and no count.
            self.count_hint = None
            self.result_count = len(self.result_list)
        else:
            self.count_hint = paginator.hint
            # Django's "select all N" and "N selected" read result_count: an int, never counted.
            self.result_count = max(paginator.count, len(self.result_list))
        self.show_full_result_count = False
        self.full_result_count = None
        self.show_admin_actions = True
        self.can_show_all = False
        self.multi_page = self.has_next_page or self.has_previous_page
        self.paginator = paginator
        self.next_page_url = (
            self.get_query_string({"p": self.page_num + 1}) if self.has_next_page else ""
        )
        self.previous_page_url = (
            self.get_query_string({"p": self.page_num - 1}) if self.has_previous_page else ""
        )
        self.first_page_url = self.get_query_string(remove=["p"]) if self.page_num > 2 else ""


class NoCountAdminMixin:
    """For a ModelAdmin over a large table: no COUNT(*) on its changelist, ever."""

    show_full_result_count = False
    show_facets = ShowFacets.NEVER  # facets would count every choice of every filter
    # Large columns the list does not show: not fetched for the page.
    changelist_defer: tuple[str, ...] = ()
    # A filtered view is counted exactly up to this many rows, then shown as "1,000+".
    count_cap = COUNT_CAP

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return NoCountChangeList

    def changelist_page(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows of one page, before slicing: the large columns left out."""
        return queryset.defer(*self.changelist_defer)

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
        filtered: bool = True,
    ) -> NoCountPaginator:
        return NoCountPaginator(
            queryset,
            per_page,
            orphans,
            allow_empty_first_page,
            filtered=filtered,
            cap=self.count_cap,
        )


if TYPE_CHECKING:

    class _NoCountModelAdmin(NoCountAdminMixin, ModelAdmin[Any]):
        """The admins a NoCountChangeList serves."""
