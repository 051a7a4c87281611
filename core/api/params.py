"""OpenAPI parameters every API shares: ids in the path, the Idempotency-Key header, pages. Each
states the rule the server enforces (core.ids, core.api.idempotency, core.api.pagination)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

from core.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from core.api.idempotency import KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN
from core.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, cursor_pattern
from core.api.serializers import ecma
from core.ids import id_pattern


def id_param(name: str, prefix: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description=description,
        pattern=ecma(id_pattern(prefix)),
    )


ACCOUNT_ID = id_param("account_id", "acc", "An account id (acc_...).")
JOB_ID = id_param("job_id", "job", "A job id (job_...).")
TASK_ID = id_param("task_id", "tsk", "A task id (tsk_...).")
EVENT_ID = id_param("event_id", "evt", "A provider event id (evt_...).")
BULK_OPERATION_ID = id_param("operation_id", "bop", "A bulk operation id (bop_...).")
SCHEDULE_ID = id_param("schedule_id", "sch", "A schedule id (sch_...).")
IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    {"type": "string", "pattern": ecma(IDEMPOTENCY_KEY_PATTERN)},
    OpenApiParameter.HEADER,
    required=False,
    description="1 to 255 printable ASCII characters, without white space at either end (HTTP "
    "drops it). Send the same key to repeat a request safely: within 24 hours the stored answer "
    "is returned without acting again. The same key with another body is a 422.",
)


def page_parameters(parse_id: Callable[[str], Any]) -> list[OpenApiParameter]:
    """`limit` and `cursor` of a list whose cursors carry ids that `parse_id` reads
    (core.api.pagination.prefixed_id or int_id)."""
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            description=f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
        ),
        OpenApiParameter(
            "cursor",
            {"type": "string", "pattern": ecma(cursor_pattern(parse_id))},
            description="From `next_cursor` or `previous_cursor` (or the `next` and `previous` "
            "links) of a page; none for the first page.",
        ),
    ]
