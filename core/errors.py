"""Domain errors: each carries a code, an HTTP status and data for the one JSON error shape."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        error.update(self.extra)
        return {"error": error}


class ValidationFailed(DomainError):
    """Bad input: 400, naming the fields."""

    status_code = 400
    code = "invalid"

    @classmethod
    def for_field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", fields={field: [message]})


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class InvalidTransition(Conflict):
    """The command is not allowed from the job's current status."""

    code = "invalid_transition"

    def __init__(
        self, *, job_id: str, command: str, status: str, message: str | None = None
    ) -> None:
        super().__init__(
            message or f"Cannot {command} job {job_id}: it is {status}.",
            extra={"current_status": status},
        )
        self.job_id = job_id
        self.command = command
        self.status = status
