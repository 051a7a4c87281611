"""Hostile input, field by field (hypothesis): no 5xx, the JSON error shape, and nothing written.

The operations and their fields come from the app's own OpenAPI schema: every body field (one
level into nested objects), every query parameter, every path id and the Idempotency-Key header
of every operation, plus the body as a whole. Each gets, in a valid request of its operation,
every value of a fixed catalogue of hostile values (text with NUL, lone surrogates sent as JSON
escapes or as raw bytes, huge strings, JSON nested 10,000 deep, numbers past every integer
type, odd date-times, wrong types, unknown fields) and a few drawn by hypothesis with a fixed
seed. Whatever the answer, it is not a 5xx; a 4xx is JSON in the one error shape, and the
database (row counts and a fingerprint of every row of the tables a request can touch) is as it
was before the request.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from accounts.models import Account, ApiKey
from core.actors import Actor
from core.models import AuditEvent, IdempotencyRecord
from jobs import services
from jobs.models import (
    BulkOperation,
    BulkOperationChunk,
    ConcurrencyLimit,
    Job,
    JobAttempt,
    ProviderEvent,
    Schedule,
    Task,
)
from jobs.states import JobStatus
from tests.api.conftest import error_of
from tests.factories import JobFactory, TaskFactory

pytestmark = pytest.mark.django_db

DRAWN_EXAMPLES = 4  # per field, on top of the catalogue
DEEP = 10_000


class Raw(str):
    """JSON text put into a body as it is (a value no Python object can round-trip, or one
    json.dumps would recurse on)."""


# --- the hostile values ---------------------------------------------------------------------

CATALOGUE: list[Any] = [
    "a\x00b",
    "\x00",
    "\ud800",  # lone surrogates: JSON escapes in a body, raw bytes in a URL
    "x\udfffy",
    "\udbff\ud800",
    "a" * 10_000,
    "é" * 300_000,  # 600 kB of UTF-8
    "z" * 2_700_000,  # a body over Django's 2.5 MB
    "",
    " \t\n",
    "\u202e\ufeff\u200b",
    None,
    True,
    0,
    -1,
    1.5,
    2**63,
    -(2**63) - 1,
    10**100,
    Raw("1e999"),  # a float that parses to infinity
    Raw("-1e999"),
    Raw("1" * 5_000),  # an integer of 5,000 digits
    [],
    {},
    ["a", None, 3],
    ["a\x00b"],
    ["\ud800"],
    {"team": "a\x00b"},
    {"team": "\ud800", "nested": {"deeper": ["\x00"]}},
    {"__proto__": {"admin": True}, "": "", "a\x00": 1},
    Raw("[" * DEEP + "]" * DEEP),
    Raw('{"a":' * DEEP + "1" + "}" * DEEP),
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2020-02-30T00:00:00Z",
    "2020-01-01T24:00:00Z",
    "2020-01-01T00:00:00+23:59",
    "2020-01-01T00:00:00",
    "+002020-01-01T00:00:00Z",
    "job_00000000000000000000000000\n",
    "tsk_%",
    "key:value",
    "team__regex:(",
    "team__isnull:maybe",
    "failed,,stalled",
]

drawn = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1).map(lambda s: s + "\x00"),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ),
)


# --- the operations, from the schema ----------------------------------------------------------


@dataclass(frozen=True)
class Target:
    operation: str
    method: str
    path: str
    location: str  # "body", "body.imap" (one level in), "query", "path", "header", "whole"
    name: str

    @property
    def id(self) -> str:
        return f"{self.operation}:{self.location}:{self.name}"


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _properties(schema: dict, node: dict) -> dict[str, dict]:
    node = _resolve(schema, node)
    properties = dict(node.get("properties", {}))
    for variant in node.get("oneOf", []):
        properties.update(_properties(schema, variant))
    return properties


def targets() -> list[Target]:
    schema = _schema()
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            op = operation["operationId"]

            def add(location: str, name: str, op=op, method=method, path=path) -> None:
                found.append(Target(op, method.upper(), path, location, name))

            for parameter in operation.get("parameters", []):
                add(parameter["in"], parameter["name"])
            body = operation.get("requestBody")
            if body:
                add("whole", "body")
                node = body["content"]["application/json"]["schema"]
                for name, field in _properties(schema, node).items():
                    add("body", name)
                    for inner in _properties(schema, field):
                        add(f"body.{name}", inner)
                add("body", "x_unknown_field")
    return found


TARGETS = targets()

# A valid request of each operation, which one hostile value at a time is put into.
VALID_BODIES: dict[str, dict] = {
    "accounts_create": {
        "name": "Acme",
        "email": "ops@acme.test",
        "imap": {"host": "imap.acme.test", "port": 993, "security": "tls", "folders": ["INBOX"]},
    },
    "accounts_pause": {"reason": "maintenance"},
    "accounts_resume": {"reason": "done"},
    "jobs_search": {"status": ["failed"], "limit": 10},
    "jobs_search_delete": {"status": ["failed"], "dry_run": True},
    "tasks_create": {"kind": "noop_batch", "params": {"count": 1}},
    "provider_events_create": {
        "provider": "imap",
        "type": "mailbox.changed",
        "external_id": "evt-1",
        "payload": {"folders": ["INBOX"]},
    },
    "jobs_update": {"priority": 1},
    "jobs_retry": {"note": "again"},
    "jobs_resolve": {"code": "ignored", "note": "checked"},
    "jobs_trigger": {"force": False},
    "jobs_cancel": {"note": "stop"},
    # account_id: the world's (_send).
    "bulk_operations_create": {"command": "retry", "filter": {"status": "failed"}, "dry_run": True},
    "bulk_operations_cancel": {"note": "stop"},
    "concurrency_limits_set": {"limit": 2},
    "schedules_create": {"kind": "noop_batch", "interval_seconds": 600, "params": {"count": 1}},
    "schedules_update": {"cron": "*/10 * * * *", "timezone": "Europe/Riga"},
    "schedules_pause": {"reason": "maintenance"},
    "schedules_resume": {"reason": "done"},
    "schedules_run_now": {},
}
VALID_QUERIES: dict[str, dict[str, str]] = {"jobs_list": {"status": "failed"}}


def test_every_operation_and_field_is_covered():
    operations = {target.operation for target in TARGETS}
    assert len(operations) == 36, sorted(operations)
    with_body = {t.operation for t in TARGETS if t.location == "whole"}
    assert with_body == set(VALID_BODIES), with_body ^ set(VALID_BODIES)
    assert len(TARGETS) > 120


# --- one request ------------------------------------------------------------------------------

_SENTINEL = "\u2063hostile\u2063"
_EVENT_NUMBERS = itertools.count()


def _json_text(body: Any, hostile: Any, *, at: tuple[str, ...] | None) -> bytes:
    """`body` as JSON (ASCII, so lone surrogates travel as escapes), with `hostile` at `at`
    (None: the whole body)."""
    if at is None:
        target: Any = _SENTINEL
    else:
        target = json.loads(json.dumps(body))
        node = target
        for key in at[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[at[-1]] = _SENTINEL
    text = json.dumps(target, ensure_ascii=True)
    value = str(hostile) if isinstance(hostile, Raw) else json.dumps(hostile, ensure_ascii=True)
    return text.replace(json.dumps(_SENTINEL, ensure_ascii=True), value).encode("ascii")


def _url_text(value: Any) -> str:
    """A value as it goes into a URL: text percent-encoded as UTF-8 (a lone surrogate as the
    bytes it would take, which are not UTF-8), anything else as its JSON text."""
    text = value if isinstance(value, str) else json.dumps(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# The tables a request can write; an API key's last use is bookkeeping of the authentication,
# not a write of the request.
_TABLES = {
    Account: (),
    ApiKey: ("last_used_at",),
    Job: (),
    Task: (),
    ProviderEvent: (),
    JobAttempt: (),
    Schedule: (),
    IdempotencyRecord: (),
    BulkOperation: (),
    BulkOperationChunk: (),
    ConcurrencyLimit: (),
}


@functools.cache
def _statements() -> list[str]:
    quote_name = connection.ops.quote_name
    statements = []
    for model, skipped in _TABLES.items():
        columns = ", ".join(
            quote_name(f.column) for f in model._meta.concrete_fields if f.attname not in skipped
        )
        table = quote_name(model._meta.db_table)
        pk = ", ".join(quote_name(field.column) for field in model._meta.pk_fields)
        statements.append(f"SELECT {columns} FROM {table} ORDER BY {pk}")
    events = quote_name(AuditEvent._meta.db_table)
    statements.append(f"SELECT COUNT(*), MAX(id) FROM {events}")  # append-only: count and last
    return statements


def _fingerprint() -> tuple:
    """Row counts and a digest of every row of the tables a request can write (raw SQL: this
    runs twice for each of thousands of requests)."""
    digest = hashlib.sha256()
    counts = []
    with connection.cursor() as cursor:
        for statement in _statements():
            cursor.execute(statement)
            rows = cursor.fetchall()
            counts.append(len(rows))
            digest.update(repr(rows).encode("utf-8", "surrogatepass"))
    return (*counts, digest.hexdigest())


@pytest.fixture
def world(keys, account):
    """What the paths point at: the account of the operator key's requests, a task, an event
    and, made fresh for each request, a failed job (every command applies to it)."""
    task = TaskFactory(account=account)
    event = ProviderEvent.objects.create(
        account=account, provider="imap", type="mailbox.changed", external_id="seen"
    )
    return {
        "account_id": account.pk,
        "task_id": task.pk,
        "event_id": event.pk,
        "action": "imap_sync_messages",
        "key": keys.op,
    }


def _ids(target: Target, world: dict) -> dict:
    ids = {name: value for name, value in world.items() if name != "key"}
    if "{job_id}" in target.path:
        ids["job_id"] = JobFactory(account_id=world["account_id"], status=JobStatus.FAILED).pk
    if "{operation_id}" in target.path:
        # A running operation, made fresh for each request (a cancel ends it).
        ids["operation_id"] = services.bulk_operation_create(
            command="retry",
            filters={},
            account_id=world["account_id"],
            actor=Actor.system("test"),
            pace=None,
        ).pk
    if "{schedule_id}" in target.path:
        # A fresh one each time (a request may have paused or deleted the last): paused for
        # resume, active for the others.
        Schedule.objects.filter(account_id=world["account_id"], kind="mailbox_sync").delete()
        ids["schedule_id"] = Schedule.objects.create(
            account_id=world["account_id"],
            kind="mailbox_sync",
            interval_seconds=300,
            next_run_at=timezone.now(),
            paused_at=timezone.now() if target.operation == "schedules_resume" else None,
        ).pk
    return ids


def _send(target: Target, world: dict, ids: dict, hostile: Any):
    path_values = {name: quote(str(value), safe="") for name, value in ids.items()}
    if target.location == "path":
        path_values[target.name] = _url_text(hostile)
    path = target.path.format(**path_values)
    query = dict(VALID_QUERIES.get(target.operation, {}))
    parts = [f"{name}={quote(value)}" for name, value in query.items() if name != target.name]
    if target.location == "query":
        parts.append(f"{target.name}={_url_text(hostile)}")
    url = path + ("?" + "&".join(parts) if parts else "")
    headers = {"Authorization": f"Bearer {world['key']}"}
    if target.location == "header":
        headers[target.name] = hostile if isinstance(hostile, str) else json.dumps(hostile)
    body = VALID_BODIES.get(target.operation)
    if target.operation == "provider_events_create":
        # A new external id each time: a seen one is answered from the first event, unread.
        body = {**body, "external_id": f"evt-{next(_EVENT_NUMBERS)}"}
    if target.operation == "bulk_operations_create":
        body = {**body, "account_id": world["account_id"]}
    data = b""
    if body is not None:
        if target.location == "whole":
            at = None
        elif target.location.startswith("body"):
            at = (*target.location.split(".")[1:], target.name)
        else:
            at = ()
        data = _json_text(body, hostile, at=at) if at != () else _json_text(body, body, at=None)
    client = Client(raise_request_exception=False)
    return client.generic(
        target.method, url, data=data, content_type="application/json", headers=headers
    )


class _ServerError(Exception):
    def __init__(self, response):
        self.response = response


def _problem(target: Target, world: dict, hostile: Any) -> str | None:
    """What is wrong with the answer to `hostile` in `target`, if anything."""
    ids = _ids(target, world)
    before = _fingerprint()
    try:
        # A 5xx is rolled back to here: a failed statement leaves a PostgreSQL transaction
        # unusable, and the test goes on to the next value.
        with transaction.atomic():
            response = _send(target, world, ids, hostile)
            if response.status_code >= 500:
                raise _ServerError(response)
    except _ServerError as error:
        response = error.response
    shown = f"{repr(hostile)[:60]} -> {response.status_code} {response.content[:160]!r}"
    if response.status_code >= 500:
        return f"server error: {shown}"
    if 400 <= response.status_code < 500:
        try:
            error_of(response)  # JSON, in the one error shape
        except AssertionError:
            return f"not the JSON error shape: {shown}"
        if _fingerprint() != before:
            return f"a 4xx changed the database: {shown}"
    return None


def test_the_fingerprint_sees_every_write(world):
    job = JobFactory(account_id=world["account_id"], status=JobStatus.FAILED)
    before = _fingerprint()
    Job.objects.filter(pk=job.pk).update(labels={"team": "mail"})
    assert _fingerprint() != before
    before = _fingerprint()
    AuditEvent.objects.create(actor_type="system", actor="system:test", command="retry")
    assert _fingerprint() != before
    before = _fingerprint()
    ApiKey.objects.update(last_used_at=None)  # not a write of a request
    assert _fingerprint() == before


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.id)
def test_a_hostile_value_is_refused_cleanly(target, world):
    problems = [p for hostile in CATALOGUE if (p := _problem(target, world, hostile))]

    @settings(
        max_examples=DRAWN_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # no shrinking: each failure says its value
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile=drawn)
    def drawn_values(hostile):
        if problem := _problem(target, world, hostile):
            problems.append(problem)

    drawn_values()
    assert not problems, f"{target.id}:\n" + "\n".join(problems)
