"""OpenAPI parameters every API shares: ids in the path, the Idempotency-Key header, pages."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

from core.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from core.api.pagination import MAX_LIMIT
from core.ids import ID_PATTERN


def id_param(name: str, prefix: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description=description,
        pattern=ID_PATTERN.pattern.replace("(acc|tsk|evt|job)", prefix),
    )


ACCOUNT_ID = id_param("account_id", "acc", "An account id (acc_...).")
JOB_ID = id_param("job_id", "job", "A job id (job_...).")
TASK_ID = id_param("task_id", "tsk", "A task id (tsk_...).")
EVENT_ID = id_param("event_id", "evt", "A provider event id (evt_...).")
IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Send the same key to repeat a request safely: within 24 hours the stored "
    "answer is returned without acting again. The same key with another body is a 422.",
)
PAGE_PARAMS = [
    OpenApiParameter(
        "limit",
        OpenApiTypes.INT,
        description=f"Page size, 1 to {MAX_LIMIT} (default 50).",
    ),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="From `next` or `previous`."),
]
