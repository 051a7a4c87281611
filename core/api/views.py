"""What every API view does with a request: read a JSON object body, validate it, refuse unknown
query parameters, and answer a page of results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import QueryDict
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.pagination import Page
from core.errors import ValidationFailed


def json_object(request: Request) -> dict[str, Any]:
    """The request body, which must be a JSON object."""
    data = request.data
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The body must be a JSON object.",
            code="invalid",
            fields={"non_field_errors": ["Expected a JSON object."]},
        )
    return data


def validated(
    serializer_class: type[serializers.Serializer[Any]], request: Request
) -> dict[str, Any]:
    serializer = serializer_class(data=json_object(request))
    serializer.is_valid(raise_exception=True)
    data: dict[str, Any] = serializer.validated_data
    return data


def reject_unknown_params(request: Request, allowed: frozenset[str] = frozenset()) -> None:
    reject_empty_params(request)
    unknown = sorted(set(request.query_params) - {"limit", "cursor"} - allowed)
    if unknown:
        raise ValidationFailed(
            f"Unknown query parameter(s): {', '.join(unknown)}.",
            fields={name: ["Unknown query parameter."] for name in unknown},
        )


def reject_empty_params(request: Request) -> None:
    """A query parameter given without a value (`?status=`) is a 400 naming it: the schema
    states each parameter's values, and the empty string is none of them."""
    empty = sorted(
        name for name in request.query_params if "" in request.query_params.getlist(name)
    )
    if empty:
        raise ValidationFailed(
            f"Empty query parameter(s): {', '.join(empty)}; leave a parameter out instead.",
            fields={name: ["May not be empty."] for name in empty},
        )


def page_response(
    request: Request,
    page: Page,
    render: type[serializers.BaseSerializer[Any]] | Callable[[Any], Any],
    *,
    base_url: str | None = None,
    query: QueryDict | None = None,
    context: dict[str, Any] | None = None,
) -> Response:
    """{"results", "next", "previous"} with the links as URLs of the GET list (and the bare
    cursors, for a client that re-posts a search body). `render` is a serializer class or a
    function of one row."""
    base = base_url or request.build_absolute_uri(request.path)
    params = (query if query is not None else request.query_params).copy()

    def link(cursor: str | None) -> str | None:
        if cursor is None:
            return None
        params["cursor"] = cursor
        return f"{base}?{params.urlencode()}"

    return Response(
        {
            "results": (
                render(page.items, many=True, context=context or {}).data
                if isinstance(render, type)
                else [render(item) for item in page.items]
            ),
            "next": link(page.next_cursor),
            "previous": link(page.previous_cursor),
            "next_cursor": page.next_cursor,
            "previous_cursor": page.previous_cursor,
        }
    )
