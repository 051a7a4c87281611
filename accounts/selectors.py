"""Reads of accounts, scoped to the caller, and the one way every app finds an object by its
public id inside a caller's scope.

Scoping lives in the querysets: a caller bound to one account gets querysets of that account
only, so an object of another account is simply not there (404 with the same body as a missing
id) and never shows up in a list, a count or an error message. An id in a path that is not even
well-formed names no object either: the same 404.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from accounts.models import Account
from accounts.permissions import Principal
from core.errors import NotFound
from core.ids import is_valid_id
from core.input import shown

_M = TypeVar("_M", bound=Model)

_NAMES = {
    "acc": "Account",
    "job": "Job",
    "tsk": "Task",
    "evt": "Provider event",
    "bop": "Bulk operation",
    "sch": "Schedule",
}


def not_found(prefix: str, object_id: Any) -> NotFound:
    """The one 404 for an id that names nothing the caller may see: unknown, another account's,
    or malformed (quoted bounded and escaped)."""
    return NotFound(f"{_NAMES[prefix]} {shown(object_id, 64)} not found.")


def get_in_scope(queryset: QuerySet[_M], object_id: str, prefix: str) -> _M:
    """The object `object_id` (from a path) in `queryset`, else the one 404 (`not_found`)."""
    if not is_valid_id(object_id, prefix):
        raise not_found(prefix, object_id)
    obj = queryset.filter(pk=object_id).first()
    if obj is None:
        # The same answer whether the id does not exist or belongs to another account.
        raise not_found(prefix, object_id)
    return obj


def accounts_visible(principal: Principal) -> QuerySet[Account]:
    qs = Account.objects.all()
    return qs if principal.is_operator else qs.filter(pk=principal.account_id)


def account_get(principal: Principal, account_id: str) -> Account:
    """The account `account_id` if the caller may see it, else NotFound."""
    return get_in_scope(accounts_visible(principal), account_id, "acc")


def account_id_in_scope(principal: Principal, account_id: str) -> str:
    """`account_id` if the caller may see that account, without a query when it can be told
    from the key alone: an account key sees only its own account, which exists (its jobs and
    keys reference it). For an operator the caller must check existence when it finds no rows
    (`account_get`), so an unknown account is a 404, never an empty list."""
    if not is_valid_id(account_id, "acc") or (
        not principal.is_operator and account_id != principal.account_id
    ):
        raise not_found("acc", account_id)
    return account_id
