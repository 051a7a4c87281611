"""Serializers every API shares: strict input (unknown fields refused, strings that are
strings), pages of results, and the one error shape with its OpenAPI responses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers


class StrictSerializer(serializers.Serializer[Any]):
    """Rejects fields it does not know instead of silently dropping them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string, not a number DRF would turn into one."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class BlankAsNullCharField(serializers.CharField):
    def to_representation(self, value: Any) -> Any:
        return value or None


@extend_schema_serializer(many=False)  # a page is one object even for list actions
class PageSerializer(serializers.Serializer[Any]):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page.")
    previous = serializers.URLField(allow_null=True, help_text="The previous (newer) page.")
    next_cursor = serializers.CharField(allow_null=True)
    previous_cursor = serializers.CharField(allow_null=True)


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Stable, machine-readable.")
    message = serializers.CharField()
    # The metaclass takes declared fields off the class, so this does not hide Serializer.fields.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Messages per field (bad input).",
    )
    current_status = serializers.CharField(required=False, help_text="On a 409: the job's status.")
    running_job_id = serializers.CharField(
        required=False, help_text="On a trigger refused: the job running now."
    )
    matched = serializers.IntegerField(
        required=False, help_text="On a search-delete refused (409): what the filter matches now."
    )


class ErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


_ERROR_DESCRIPTIONS = {
    400: "Bad input (malformed JSON or JSON nested over 32 levels, text with a NUL character "
    "or a lone surrogate, wrong types, unknown fields, bad cursors, limits or date-times); "
    "`fields` names each problem.",
    401: "No API key, or an invalid or revoked one.",
    403: "A read-only key asked for a write, or the caller may not do this.",
    404: "No such object (an unknown or malformed id), or it belongs to another account.",
    405: "Method not allowed on this path.",
    406: "The Accept header asks for a format other than JSON.",
    409: "The job's status does not allow the command (see `current_status`), or a "
    "search-delete's `expected_count` is not what its filter matches (see `matched`).",
    413: "The body is over the size limit.",
    415: "The body is not `application/json`.",
    422: "The Idempotency-Key was already used with a different request.",
    429: "Too many requests.",
}


def error_responses(*statuses: int, body: bool = False) -> dict[int, Any]:
    """OpenAPI responses for the errors an operation can answer, all in the one error shape.
    Every operation can answer 400, 401, 403, 404, 405, 406 and 429; one with a body, 413
    and 415."""
    from drf_spectacular.utils import OpenApiResponse

    codes = {400, 401, 403, 404, 405, 406, 429, *statuses}
    if body:
        codes.update({413, 415})
    return {
        code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[code])
        for code in sorted(codes)
    }
