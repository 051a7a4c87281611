"""drf-spectacular postprocessing hooks: the shared schema components that no serializer
registers on its own (JsonValue, which is recursive), and request bodies marked required where
the server refuses a request without one."""

from __future__ import annotations

from typing import Any

from core.api.serializers import JSON_VALUE_COMPONENT, JSON_VALUE_SCHEMA

_REF = "#/components/schemas/"


def add_shared_components(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[JSON_VALUE_COMPONENT] = JSON_VALUE_SCHEMA
    return result


def _needs_content(schema: dict[str, Any]) -> bool:
    """Whether an empty body (`{}`, as the server reads a missing one) breaks `schema`."""
    return bool(
        schema.get("required")
        or schema.get("minProperties")
        or {"oneOf", "anyOf", "not"} & set(schema)
    )


def require_request_bodies(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A body whose schema refuses `{}` is required (drf-spectacular only looks at required
    fields, and not at all through a serializer extension's schema)."""
    schemas = result.get("components", {}).get("schemas", {})
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            body = operation.get("requestBody")
            if not body:
                continue
            for media in body.get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                schema = schemas.get(ref[len(_REF) :], {}) if ref.startswith(_REF) else {}
                if _needs_content(schema):
                    body["required"] = True
    return result
