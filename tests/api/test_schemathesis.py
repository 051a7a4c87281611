"""Property-based run of the app against its own OpenAPI schema (schemathesis, from PyPI).

Every operation gets a bounded number of generated requests with a fixed seed, once with real
ids of the caller's account and once with random well-formed ids. Every answer must be no 500,
a documented status, JSON where JSON is promised, and conform to the documented schema.
"""

from __future__ import annotations

import time

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jobs.states import JobStatus
from tests.factories import JobFactory, TaskFactory

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 25
SEED = 20240601


@pytest.fixture
def app():
    # Django closes the database connection at the end of each request; in a test that would
    # close the test transaction's connection (django.test.Client does the same disconnect).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def schema(app, db):
    return schemathesis.openapi.from_wsgi("/api/schema/", app)


def test_every_operation_conforms_to_the_schema(app, schema, keys, account):
    jobs = [
        JobFactory(account=account, status=status, action="noop") for status in JobStatus.values
    ]
    task = TaskFactory(account=account)
    real_ids = {
        "account_id": account.pk,
        "job_id": jobs[4].pk,  # failed: retry, resolve and trigger all apply
        "task_id": task.pk,
    }
    headers = {"Authorization": f"Bearer {keys.op}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    started = time.monotonic()
    tested = []
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        fixed = {name: real_ids[name] for name in names if name in real_ids}
        strategy = operation.as_strategy()
        if fixed:
            strategy = st.one_of(operation.as_strategy(path_parameters=fixed), strategy)

        @hypothesis.seed(SEED)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )
        @given(case=strategy)
        def check(case):
            response = case.call(app=app, headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        check()
        tested.append(operation.label)
    assert len(tested) == len(operations)
    # A guard on the suite's budget, not a benchmark: bounded examples keep this quick.
    assert time.monotonic() - started < 120
