"""The input boundary at the door: what every request brings before any view reads it.

- The query string, on every path: each name and value must be UTF-8 text by the text rule
  (core.input). Django decodes query strings leniently (bad bytes become U+FFFD) and passes NUL
  characters on, which PostgreSQL can neither store nor compare: the filters of the API and of
  the admin would hand them to the database. A 400 naming the parameter: JSON under /api/,
  Django's page elsewhere.
- Outside /api/ (the admin), the path and a posted form take the same rule: a NUL in an object
  id of the path, or in a selected id or a field of a form, reached the database too. (Under
  /api/ a body is JSON, checked by core.api.parsers, and a malformed id in the path is a 404.)
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, JsonResponse

from core import input as client_input
from core.api.exceptions import bounded, is_api
from core.errors import ValidationFailed

_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class InputBoundaryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = is_api(request)
        try:
            query = request.META.get("QUERY_STRING", "")
            if query:
                client_input.check_query_string(_raw(query))
            if not api:
                client_input.check_text("path", request.path_info, len(request.path_info))
                if request.method == "POST" and request.content_type in _FORMS:
                    # Read here rather than by the CSRF check a moment later: the same parse.
                    client_input.check_form(request.POST)
        except ValidationFailed as exc:
            if api:
                return JsonResponse(bounded(exc.as_dict()), status=exc.status_code)
            raise BadRequest(exc.message) from None
        return self.get_response(request)


def _raw(query: str) -> bytes:
    try:
        return query.encode("iso-8859-1")  # WSGI: the raw bytes as latin-1 text (PEP 3333)
    except UnicodeEncodeError:
        return query.encode("utf-8", "surrogatepass")  # ASGI: decoded as UTF-8 already
