"""The API's one parser: JSON through the input boundary's rules (core.input).

DRF's JSONParser hands the body to `json.load`, which recurses once per level of nesting (so a
body nested 10,000 levels deep ended in a RecursionError) and lets through NUL characters and
lone surrogates that no database column can store. This one checks the depth on the text
first, then every key and string at any depth, and answers a 400 naming the field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core import input as client_input


class JsonParser(JSONParser):
    """`application/json` bodies, checked by core.input.loads. A subclass of JSONParser so
    that DRF reads the body through `request.body`, which enforces
    DATA_UPLOAD_MAX_MEMORY_SIZE (413)."""

    def parse(
        self,
        stream: IO[Any] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        assert stream is not None  # DRF passes the request's body stream
        raw = stream.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("JSON parse error - the body is not UTF-8 text.") from None
        try:
            return client_input.loads(text)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {client_input.shown(exc, 200)}") from None
