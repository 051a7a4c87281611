"""`Idempotency-Key` for POST commands: the same key and body within the TTL get the stored
answer without acting again; the same key with another body is a 422 that says so.

The record, the command and the stored answer are one transaction. A concurrent request with
the same key blocks on the record's unique index until the first commits, then replays its
answer (PostgreSQL); on SQLite the write lock serializes the two the same way. Only successful
answers are stored: an error means nothing was done, so repeating the request is harmless, and
a request that crashes rolls back its record. Keys are per principal: two callers
never see each other's answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from core.actors import Actor
from core.errors import Conflict, DomainError, ValidationFailed
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# 1 to 255 printable ASCII characters. None is white space at either end: HTTP drops it, so the
# server could not tell "a" from " a".
KEY_PATTERN = r"\A[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?\Z"

_View = TypeVar("_View", bound=APIView)
_P = ParamSpec("_P")


class IdempotencyKeyReused(DomainError):
    status_code = 422
    code = "idempotency_key_reused"


def _body_hash(method: str, path: str, data: Any) -> str:
    canonical = json.dumps(
        {"method": method, "path": path, "body": data}, sort_keys=True, cls=JSONEncoder
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _clean_key(key: str) -> str:
    if re.fullmatch(KEY_PATTERN, key) is None:
        raise ValidationFailed.for_field(
            HEADER, "must be 1 to 255 printable ASCII characters, no space at either end."
        )
    return key


def _caller(request: Request) -> Actor:
    # The API's permission class has admitted the request: it carries an API key (request.auth)
    # or a staff user's session. Records are kept per caller, as the audit trail names it.
    auth: Any = request.auth  # an accounts ApiKey (core imports no other app)
    return Actor.api_key(auth) if auth is not None else Actor.user(request.user)


def _replay(record: IdempotencyRecord, body_hash: str) -> Response:
    if record.body_hash != body_hash:
        raise IdempotencyKeyReused(
            f"{HEADER} {record.key!r} was already used with a different request; "
            "use a new key for a new request.",
            fields={HEADER: ["Already used with a different request body or path."]},
        )
    if record.status_code is None:  # cannot be seen committed; kept as a guard
        raise Conflict(f"A request with {HEADER} {record.key!r} is in progress.")
    return Response(
        record.response_body, status=record.status_code, headers={REPLAYED_HEADER: "true"}
    )


def idempotent(
    view_method: Callable[Concatenate[_View, Request, _P], Response],
) -> Callable[Concatenate[_View, Request, _P], Response]:
    """Decorate a POST view method (or viewset action) to honour the Idempotency-Key header."""

    @functools.wraps(view_method)
    def wrapper(self: _View, request: Request, /, *args: _P.args, **kwargs: _P.kwargs) -> Response:
        raw_key = request.headers.get(HEADER)
        if raw_key is None:
            return view_method(self, request, *args, **kwargs)
        key = _clean_key(raw_key)
        assert request.method is not None  # set on every request Django has parsed
        caller = _caller(request)
        body_hash = _body_hash(request.method, request.path, request.data)
        cutoff = timezone.now() - timedelta(hours=settings.JOBS_IDEMPOTENCY_TTL_HOURS)
        lookup = {"principal": caller.name, "key": key}
        with transaction.atomic():
            IdempotencyRecord.objects.filter(**lookup, created_at__lt=cutoff).delete()
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        **lookup,
                        method=request.method,
                        path=request.path[:500],
                        body_hash=body_hash,
                    )
            except IntegrityError:
                return _replay(IdempotencyRecord.objects.get(**lookup), body_hash)
            try:
                response = view_method(self, request, *args, **kwargs)
            except Exception as exc:
                response = self.handle_exception(exc)
            if not 200 <= response.status_code < 300:
                # Nothing was done (bad input, not found, a refused transition): keep no record,
                # so the request may be corrected or repeated once the state allows it.
                record.delete()
            else:
                record.status_code = response.status_code
                record.response_body = json.loads(json.dumps(response.data, cls=JSONEncoder))
                record.save(update_fields=["status_code", "response_body"])
        return response

    return wrapper
