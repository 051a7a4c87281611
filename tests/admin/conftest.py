from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

READ_ONLY_PERMS = ["jobs.view_job", "core.view_auditevent", "accounts.view_account"]
OPERATOR_PERMS = [
    *READ_ONLY_PERMS,
    "jobs.change_job",
    "jobs.retry_job",
    "jobs.resolve_job",
    "jobs.trigger_job",
    "jobs.cancel_job",
    "jobs.delete_job",
    "accounts.change_account",
]


def make_staff(django_user_model, username: str, perms: list[str]):
    user = django_user_model.objects.create_user(username, password="pw-for-tests-1", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # Hashing a test password with the production hasher costs a second per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.test", "pw-for-tests-1")


@pytest.fixture
def operator(db, django_user_model):
    return make_staff(django_user_model, "operator", OPERATOR_PERMS)


@pytest.fixture
def readonly(db, django_user_model):
    return make_staff(django_user_model, "viewer", READ_ONLY_PERMS)


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def readonly_client(client, readonly):
    client.force_login(readonly)
    return client
