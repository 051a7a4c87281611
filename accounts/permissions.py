"""Who may call the API, and what each caller may see (its scope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey
from core.actors import Actor

if TYPE_CHECKING:
    # Not at run time: rest_framework.views reads the settings that name this module.
    from rest_framework.views import APIView


@dataclass(frozen=True)
class Principal:
    """The caller: an API key (of one account, or an operator key) or a staff user."""

    actor: Actor
    # The one account this caller may see, or None for every account.
    account_id: str | None
    read_only: bool = False
    user: Any = None  # the staff user of a session, None for a key

    @property
    def is_operator(self) -> bool:
        return self.account_id is None

    @property
    def name(self) -> str:
        return self.actor.name


def principal_of(request: HttpRequest | Request) -> Principal | None:
    """The principal of an authenticated request, None when the caller is nobody we serve."""
    key = getattr(request, "auth", None)
    if isinstance(key, ApiKey):
        return Principal(Actor.api_key(key), key.account_id, key.read_only)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return Principal(Actor.user(user), None, False, user)
    return None


def principal(request: HttpRequest | Request) -> Principal:
    """The principal of a request that IsApiClient admitted (every API view's requests)."""
    found = principal_of(request)
    assert found is not None, "IsApiClient admits only requests with a principal"
    return found


class IsApiClient(BasePermission):
    """An API key or a staff user's session.

    - Read-only keys get 403 on every write (a view names its POST reads in `read_actions`).
    - A view lists `operator_actions`: actions only operators (operator keys, staff) may run.
    - A view maps actions to Django permissions in `staff_permissions`, so a staff user who
      may only look in the admin may only look in the API too.
    Objects outside a caller's scope are not a matter of permission: the scoped querysets of
    jobs.selectors answer 404 for them before any of this is asked.
    """

    message = "Authentication credentials were not provided."

    def has_permission(self, request: Request, view: APIView) -> bool:
        principal = principal_of(request)
        if principal is None:
            if request.user is not None and request.user.is_authenticated:
                self.message = "Only staff users may use the API with a session."
            return False
        action = getattr(view, "action", None)
        # A search is a POST that writes nothing.
        is_write = request.method not in SAFE_METHODS and action not in getattr(
            view, "read_actions", ()
        )
        if is_write and principal.read_only:
            self.message = "This API key is read-only."
            self.code = "read_only_key"
            return False
        if action in getattr(view, "operator_actions", ()) and not principal.is_operator:
            self.message = "Only operator keys and staff users may do this."
            self.code = "operator_only"
            return False
        perm = getattr(view, "staff_permissions", {}).get(action)
        if principal.user is not None and perm and not principal.user.has_perm(perm):
            self.message = f"You do not have the permission {perm}."
            self.code = "permission_denied"
            return False
        return True
