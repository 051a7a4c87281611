"""GET /api/accounts/:id/concurrency-limits and PUT .../concurrency-limits/:action: an
account's concurrency limits, overridden by operators."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from jobs.models import ConcurrencyLimit
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

SYNC = "imap_sync_messages"


def path(account, action: str = "") -> str:
    return f"/api/accounts/{account.pk}/concurrency-limits" + (f"/{action}" if action else "")


def test_an_account_sees_the_limits_of_its_policies(api, keys, account):
    response = api.get(path(account), key=keys.a)
    assert response.status_code == 200
    results = response.json()["results"]
    assert {"action": SYNC, "limit": 1, "default": 1, "own": None} in results
    assert all(entry["action"] != "noop" for entry in results)  # no limit, not listed


def test_an_operator_overrides_and_clears_a_limit(api, keys, account):
    response = api.call("put", path(account, SYNC), {"limit": 15}, key=keys.op)
    assert response.status_code == 200, response.content
    assert response.json() == {"action": SYNC, "limit": 15, "default": 1, "own": 15}
    assert ConcurrencyLimit.objects.get(account=account, action=SYNC).limit == 15
    assert AuditEvent.objects.filter(account_id=account.pk, command="update_account").exists()
    # An action without a policy limit can be limited for one account.
    response = api.call("put", path(account, "noop"), {"limit": 3}, key=keys.op)
    assert response.json() == {"action": "noop", "limit": 3, "default": None, "own": 3}
    listed = {
        entry["action"]: entry for entry in api.get(path(account), key=keys.a).json()["results"]
    }
    assert listed["noop"]["limit"] == 3 and listed[SYNC]["limit"] == 15
    # null: back to the policy.
    response = api.call("put", path(account, SYNC), {"limit": None}, key=keys.op)
    assert response.json() == {"action": SYNC, "limit": 1, "default": 1, "own": None}
    response = api.call("put", path(account, "noop"), {"limit": None}, key=keys.op)
    assert response.json() == {"action": "noop", "limit": None, "default": None, "own": None}
    assert not ConcurrencyLimit.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": "3"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({}, "limit"),
        ({"limit": 2, "extra": 1}, "extra"),
    ],
)
def test_bad_limits_are_a_400_naming_the_field(api, keys, account, body, field):
    response = api.call("put", path(account, SYNC), body, key=keys.op)
    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert not ConcurrencyLimit.objects.exists()


def test_who_may_set_a_limit(api, keys, account, other_account):
    # An account key reads its own limits but may not raise them: the cap protects the
    # provider's mailbox, an operator's decision.
    assert api.call("put", path(account, SYNC), {"limit": 2}, key=keys.a).status_code == 403
    assert api.call("put", path(account, SYNC), {"limit": 2}, key=keys.op_ro).status_code == 403
    # Another account's limits do not exist for a key of this one.
    assert api.get(path(other_account), key=keys.a).status_code == 404
    assert not ConcurrencyLimit.objects.exists()


def test_unknown_accounts_and_actions_are_404(api, keys, account):
    unknown = "/api/accounts/acc_01HZZZZZZZZZZZZZZZZZZZZZZZ/concurrency-limits"
    assert api.get(unknown, key=keys.op).status_code == 404
    response = api.call("put", path(account, "no_such_action"), {"limit": 2}, key=keys.op)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert api.call("put", path(account, "Bad-Name"), {"limit": 2}, key=keys.op).status_code == 404
