"""The one error shape of the API: `{"error": {"code", "message", "fields"}}`.

Every error the API answers goes through `api_exception_handler` (DRF's EXCEPTION_HANDLER):
domain errors, DRF's own (400 parse errors, 401, 403, 404, 405, 406, 415, 429), and Django's
ValidationError, Http404 and PermissionDenied. Unknown /api/ paths and server errors under /api/
get the same shape from `api_not_found` and `api_server_error`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import DomainError

# Stable codes for DRF's exceptions (their default_code is sometimes vague, e.g. "error").
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_json",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def error_body(
    code: str, message: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as {"dotted.field": [messages]}."""
    if isinstance(detail, dict):
        fields: dict[str, list[str]] = {}
        for name, value in detail.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            for field, messages in _flatten(value, key).items():
                fields.setdefault(field, []).extend(messages)
        return fields
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        fields = {}
        for index, item in enumerate(detail):
            for field, messages in _flatten(
                item, f"{prefix}.{index}" if prefix else str(index)
            ).items():
                fields.setdefault(field, []).extend(messages)
        return fields
    return {prefix or "non_field_errors": [str(detail)]}


def _summary(fields: dict[str, list[str]]) -> str:
    return "Invalid input: " + "; ".join(
        f"{name}: {' '.join(messages)}" for name, messages in fields.items()
    )


def _validation_response(
    fields: dict[str, list[str]], headers: dict[str, str] | None = None
) -> Response:
    return Response(error_body("invalid", _summary(fields), fields), status=400, headers=headers)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every handled exception becomes the one error shape."""
    if isinstance(exc, DomainError):
        set_rollback()
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        set_rollback()
        if hasattr(exc, "error_dict"):
            fields = {
                name: [str(m) for m in messages] for name, messages in exc.message_dict.items()
            }
        else:
            fields = {"non_field_errors": [str(m) for m in exc.messages]}
        return _validation_response(fields)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500 (api_server_error)

    set_rollback()
    headers: dict[str, str] = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if wait := getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(wait))
    if isinstance(exc, exceptions.ValidationError):
        return _validation_response(_flatten(exc.detail), headers)
    code = next(
        (code for cls, code in _DRF_CODES.items() if isinstance(exc, cls)),
        getattr(exc, "default_code", "error"),
    )
    detail = exc.detail
    if isinstance(detail, exceptions.ErrorDetail) and detail.code not in (None, exc.default_code):
        code = detail.code  # a code chosen where the error was raised (e.g. read_only_key)
    message = str(detail) if not isinstance(detail, (list, dict)) else str(exc.default_detail)
    if exc.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return Response(error_body(code, message), status=exc.status_code, headers=headers)


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under /api/: a JSON 404, never Django's HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)


def api_server_error(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """handler500: the one error shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("internal_error", "Internal server error. It was logged."), status=500
        )
    return defaults.server_error(request, *args, **kwargs)
