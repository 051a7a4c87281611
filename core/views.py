"""Plain Django views mounted at the site's root (jobsconsole/urls.py)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

FAVICON = Path(__file__).resolve().parent / "static" / "core" / "favicon.ico"


@cache
def _favicon() -> bytes:
    return FAVICON.read_bytes()


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on every page that names no icon (the browsable API,
    JSON answers). The admin's pages name core/favicon.svg, the same picture drawn as a vector.
    Answered from memory rather than through the static files: it works the same with and
    without a collectstatic run and has no hashed name to point at."""
    response = HttpResponse(_favicon(), content_type="image/vnd.microsoft.icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
