"""The label filter takes only what it documents: `key:value` pairs compared exactly, under the one
label rule (jobs.rules) that writes obey too. A key is never parsed as an ORM lookup or an array
index (issue 13, finding 2): `label=team__regex:^a+$` used to filter by regex, and
`team__regex:(`, `team__isnull:maybe` or `team__range:a` answered 500."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.db.models.fields.json import KeyTransform
from django.urls import reverse

from jobs import services
from jobs.models import Job
from jobs.states import JobStatus as S
from tests.api import conftest as api_fixtures
from tests.api.conftest import error_of
from tests.factories import JobFactory
from tests.state import snapshot

pytestmark = pytest.mark.django_db

# The API client and keys of tests/api.
api = api_fixtures.api
keys = api_fixtures.keys

# Every lookup and transform Django has for a JSON key and for the JSON field itself.
LOOKUPS = sorted(set(KeyTransform.get_lookups()) | set(Job._meta.get_field("labels").get_lookups()))
VALUES = ["a", "^a+$", "(", "maybe", "true", "a,b", "[1]", "1"]
BAD_KEYS = ["team__x", "__team", "0", "1_0", "-1", "_team", "9lives", "a" * 51, "té", "a b", ""]


@pytest.fixture
def jobs(account):
    return {
        "alpha": JobFactory(account=account, status=S.FAILED, labels={"team": "alpha"}),
        "aa": JobFactory(account=account, status=S.FAILED, labels={"team": "aa"}),
        "beta": JobFactory(account=account, status=S.FAILED, labels={"team": "beta", "env": "x"}),
        "none": JobFactory(account=account, status=S.FAILED),
    }


def test_every_lookup_django_knows_is_refused():
    assert {"regex", "isnull", "range", "startswith", "gt", "contains", "has_key"} <= set(LOOKUPS)


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("lookup", LOOKUPS)
def test_a_lookup_in_the_key_is_400_naming_label_everywhere(
    api, keys, account, jobs, lookup, value
):
    label = f"team__{lookup}:{value}"
    before = snapshot()
    listed = api.get(f"/api/accounts/{account.pk}/jobs?{urlencode({'label': label})}", key=keys.a)
    assert listed.status_code == 400, listed.content
    assert "label" in error_of(listed)["fields"]
    for endpoint, extra in (
        ("search", {}),
        ("search-delete", {"dry_run": True}),
        ("search-delete", {"expected_count": 4}),
    ):
        response = api.post(
            f"/api/accounts/{account.pk}/jobs/{endpoint}", {"label": [label], **extra}, key=keys.a
        )
        assert response.status_code == 400, (endpoint, response.content)
        assert "label" in error_of(response)["fields"]
    assert snapshot() == before


@pytest.mark.parametrize("label", ["team__regex:(", "team__isnull:maybe", "team__range:a"])
def test_the_issues_500s_are_400s(api, keys, account, jobs, label):
    response = api.get(f"/api/accounts/{account.pk}/jobs?{urlencode({'label': label})}", key=keys.a)
    assert response.status_code == 400
    assert "label" in error_of(response)["fields"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_outside_the_one_rule_are_refused_for_filters_and_writes(
    api, keys, account, jobs, key
):
    before = snapshot()
    listed = api.get(
        f"/api/accounts/{account.pk}/jobs?{urlencode({'label': f'{key}:x'})}", key=keys.a
    )
    assert listed.status_code == 400 and "label" in error_of(listed)["fields"], listed.content
    patched = api.patch(f"/api/jobs/{jobs['none'].pk}", {"labels": {key: "x"}}, key=keys.a)
    assert patched.status_code == 400 and "labels" in error_of(patched)["fields"]
    assert snapshot() == before


def test_a_label_matches_its_value_exactly(api, keys, account, jobs):
    def found(*labels: str) -> set[str]:
        query = urlencode([("label", label) for label in labels])
        response = api.get(f"/api/accounts/{account.pk}/jobs?{query}", key=keys.a)
        assert response.status_code == 200, response.content
        return {job["id"] for job in response.json()["results"]}

    assert found("team:alpha") == {jobs["alpha"].pk}
    assert found("team:a") == set()  # not a prefix, not a substring
    assert found("team:alph%") == found("team:alph_") == found("team:.*") == set()
    assert found("team:beta", "env:x") == {jobs["beta"].pk}
    assert found("team:alpha", "env:x") == set()
    assert found("env:") == set()


def test_values_with_special_characters_and_colons_match_exactly(api, keys, account):
    values = ["a:b", "50%", "x_y", "it's", 'say "hi"', "back\\slash", "é😀", "in side", ""]
    made = {value: JobFactory(account=account, labels={"tag": value}) for value in values}
    for value, job in made.items():
        body = {"label": [f"tag:{value}"]}
        response = api.post(f"/api/accounts/{account.pk}/jobs/search", body, key=keys.a)
        assert response.status_code == 200, (value, response.content)
        assert [row["id"] for row in response.json()["results"]] == [job.pk], value


@pytest.mark.parametrize("value", ["a,b", " padded", "padded ", "\t"])
def test_values_a_filter_could_not_name_are_refused_at_write(api, keys, jobs, value):
    # The filter splits on commas and strips: the write rule refuses what it could not find.
    before = snapshot()
    patched = api.patch(f"/api/jobs/{jobs['none'].pk}", {"labels": {"team": value}}, key=keys.a)
    assert patched.status_code == 400 and "labels" in error_of(patched)["fields"]
    assert snapshot() == before


def test_label_values_follow_the_write_rule(api, keys, account, jobs):
    long = "v" * 201
    response = api.post(
        f"/api/accounts/{account.pk}/jobs/search", {"label": [f"team:{long}"]}, key=keys.a
    )
    assert response.status_code == 400 and "label" in error_of(response)["fields"]
    patched = api.patch(f"/api/jobs/{jobs['none'].pk}", {"labels": {"team": long}}, key=keys.a)
    assert patched.status_code == 400


def test_search_delete_by_label_deletes_the_exact_matches_only(account, actor, jobs):
    result = services.jobs_search_delete(
        account_id=account.pk, filters={"label": "team:aa"}, actor=actor, expected_count=1
    )
    assert result["deleted"] == 1
    assert set(Job.objects.values_list("pk", flat=True)) == {
        jobs["alpha"].pk,
        jobs["beta"].pk,
        jobs["none"].pk,
    }


def test_the_admin_queue_refuses_a_lookup_in_a_label(client, django_user_model, account, jobs):
    user = django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")
    client.force_login(user)
    for label in ("team__regex:^a", "team__isnull:maybe", "team__range:a"):
        query = urlencode({"account": account.pk, "label": label})
        queue = client.get(f"{reverse('admin:jobs_job_changelist')}?{query}", follow=True)
        assert queue.status_code == 200
        said = [str(message) for message in queue.context["messages"]]
        assert any("label: bad key" in m for m in said), said
        page = client.get(f"{reverse('admin:jobs_job_search_delete')}?{query}")
        assert page.status_code == 200
        assert 'id="refusal"' in page.content.decode(), label
    assert Job.objects.count() == 4
