"""The one error shape of the API: `{"error": {"code", "message", "fields"}}`.

Every error the API answers goes through `api_exception_handler` (DRF's EXCEPTION_HANDLER):
domain errors, DRF's own (400 parse errors, 401, 403, 404, 405, 406, 415, 429), and Django's
ValidationError, Http404, PermissionDenied and SuspiciousOperation (a body over
DATA_UPLOAD_MAX_MEMORY_SIZE is a 413). What Django answers by itself under /api/ takes the same
shape: unknown paths (`api_not_found`), its 400, 403, 404 and 500 handlers (jobsconsole.urls)
and a CSRF failure (CSRF_FAILURE_VIEW); elsewhere Django's own pages stay.

Messages may quote client input (a value that is not a choice, a header): every error body is
bounded (`bounded`) so that it neither grows with the input nor fails to render.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import DomainError
from core.input import shown

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


# Bounds of an error body: a message, each field's name and messages, and how many are named.
MAX_MESSAGE = 2000
MAX_FIELD_MESSAGE = 500
MAX_FIELD_NAME = 200
MAX_FIELDS = 50
MAX_MESSAGES_PER_FIELD = 10


def bounded(body: dict[str, Any]) -> dict[str, Any]:
    """An error body with every string bounded and escaped (core.input.shown)."""
    error = dict(body["error"])
    for name, value in error.items():
        if isinstance(value, str):
            error[name] = shown(value, MAX_MESSAGE)
    fields = error.get("fields")
    if isinstance(fields, dict):
        error["fields"] = {
            shown(name, MAX_FIELD_NAME): [
                shown(message, MAX_FIELD_MESSAGE) for message in messages[:MAX_MESSAGES_PER_FIELD]
            ]
            for name, messages in list(fields.items())[:MAX_FIELDS]
        }
    return {**body, "error": error}


def error_body(
    code: str, message: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return bounded({"error": error})


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
        return Response(bounded(exc.as_dict()), status=exc.status_code)
    if isinstance(exc, SuspiciousOperation):
        # Raised by Django while reading the request (a body over the limit, too many fields).
        set_rollback()
        body, status_code = unreadable_request(exc)
        return Response(body, status=status_code)
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


def unreadable_request(exc: Exception | None) -> tuple[dict[str, Any], int]:
    """The body and status for a request Django refused to read (SuspiciousOperation,
    BadRequest): 413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE, else 400."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = error_body("request_too_large", f"The request body is over {limit:,} bytes.")
        return body, 413
    return error_body("bad_request", "The request could not be read."), 400


def is_api(request: HttpRequest) -> bool:
    return request.path_info == "/api" or request.path_info.startswith("/api/")


# Exempt from CSRF so that a POST to an unknown path is a JSON 404, not Django's CSRF page: the
# view changes nothing whatever the method.
@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under /api/: a JSON 404, never Django's HTML page."""
    return JsonResponse(
        error_body("not_found", f"No API endpoint at {shown(request.path)}."), status=404
    )


def api_bad_request(
    request: HttpRequest, exception: Exception | None = None, *args: Any, **kwargs: Any
) -> HttpResponse:
    """handler400 (Django's SuspiciousOperation and BadRequest raised outside DRF): the one
    error shape under /api/, a 413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE."""
    if is_api(request):
        body, status_code = unreadable_request(exception)
        return JsonResponse(body, status=status_code)
    return defaults.bad_request(request, exception or Exception(), *args, **kwargs)


def api_permission_denied(
    request: HttpRequest, exception: Exception | None = None, *args: Any, **kwargs: Any
) -> HttpResponse:
    """handler403."""
    if is_api(request):
        return JsonResponse(
            error_body("permission_denied", "You do not have permission to do this."), status=403
        )
    return defaults.permission_denied(request, exception or Exception(), *args, **kwargs)


def api_page_not_found(
    request: HttpRequest, exception: Exception | None = None, *args: Any, **kwargs: Any
) -> HttpResponse:
    """handler404."""
    if is_api(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception, *args, **kwargs)


def csrf_failure(request: HttpRequest, reason: str = "", **kwargs: Any) -> HttpResponse:
    """CSRF_FAILURE_VIEW. The API's views are exempt (a key needs no CSRF token; a staff
    session's writes are checked by DRF's SessionAuthentication, a JSON 403): this answers
    whatever else under /api/ Django refuses."""
    if is_api(request):
        return JsonResponse(
            error_body("csrf_failed", "CSRF verification failed: send an API key instead."),
            status=403,
        )
    return csrf.csrf_failure(request, reason=reason, **kwargs)


def api_server_error(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """handler500: the one error shape under /api/, Django's page elsewhere."""
    if is_api(request):
        return JsonResponse(
            error_body("internal_error", "Internal server error. It was logged."), status=500
        )
    return defaults.server_error(request, *args, **kwargs)
